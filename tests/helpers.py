"""Checks that several test files share (tests/ is on the import path under pytest)."""

import pytest


def assert_error_names(call, words, error=ValueError):
    """`call()` raises `error` whose message contains every one of `words`: the argument,
    the value and what was expected, as DESIGN.md asks of every error users get."""
    with pytest.raises(error) as raised:
        call()
    message = str(raised.value)
    assert all(word in message for word in words), message
