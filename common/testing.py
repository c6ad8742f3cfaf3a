"""Helpers that notebooks and tests share, written once (CONTRIBUTING.md, "One source of
truth"): checking that a bad input gets an error that names it."""


def error_of(call, error: type[Exception] | tuple[type[Exception], ...] = ValueError) -> str:
    """The message of the `error` that `call()` raises; AssertionError if it raises none."""
    try:
        call()
    except error as raised:
        return str(raised)
    raise AssertionError(f"expected {getattr(error, '__name__', error)}, but the call returned")


def assert_error_names(call, words, error: type[Exception] = ValueError) -> str:
    """`call()` raises `error` whose message contains every one of `words`: the argument,
    the value and what was expected. Returns the message."""
    message = error_of(call, error)
    missing = [word for word in words if word not in message]
    assert not missing, f"the message does not name {missing}: {message}"
    return message
