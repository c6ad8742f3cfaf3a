"""Day 1's proofs as unit tests: each component against an independent reference."""

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from day01_transformer import (
    LayerNorm,
    MultiHeadAttention,
    PositionalEncoding,
    PositionwiseFeedForward,
    copy_into_torch_attention,
    scaled_dot_product_attention,
)

from helpers import assert_error_names

D_MODEL, HEADS, BATCH, TGT, SRC = 32, 4, 3, 6, 9


def test_attention_equals_pytorch_where_defined_and_is_zero_elsewhere():
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    mask = torch.rand(2, 1, 5, 7) > 0.4
    mask[0, 0, 2] = False
    output, weights = scaled_dot_product_attention(q, k, v, mask)
    has_key = mask.any(-1, keepdim=True)
    reference = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert_close(output, torch.where(has_key, reference, 0.0))
    assert_close(weights.sum(-1), has_key.squeeze(-1).expand(2, 3, 5).float())
    assert (weights[~mask.expand_as(weights)] == 0).all()
    assert (output[0, :, 2] == 0).all()


def test_attention_without_mask_rows_sum_to_one():
    _, weights = scaled_dot_product_attention(torch.randn(4, 5, 8), torch.randn(4, 6, 8),
                                              torch.randn(4, 6, 8))
    assert_close(weights.sum(-1), torch.ones(4, 5))


def test_fully_masked_rows_have_finite_gradients():
    q, k, v = (torch.randn(1, 3, 4, requires_grad=True) for _ in range(3))
    mask = torch.tensor([[True, False, False], [False, False, False], [True, True, True]])
    output, _ = scaled_dot_product_attention(q, k, v, mask)
    output.sum().backward()
    assert all(t.grad.isfinite().all() for t in (q, k, v))
    assert (output[0, 1] == 0).all()


@pytest.fixture
def attention_pair():
    ours = MultiHeadAttention(D_MODEL, HEADS)
    theirs = nn.MultiheadAttention(D_MODEL, HEADS, batch_first=True)
    copy_into_torch_attention(ours, theirs)
    return ours, theirs


CAUSAL = torch.ones(TGT, TGT, dtype=torch.bool).tril()
KEEPS_KEY = torch.arange(SRC) < torch.tensor([SRC, 5, 2])[:, None]


@pytest.mark.parametrize("case", ["self", "self-causal", "cross", "cross-padding"])
def test_multi_head_attention_equals_torch(attention_pair, case):
    ours, theirs = attention_pair
    x, memory = torch.randn(BATCH, TGT, D_MODEL), torch.randn(BATCH, SRC, D_MODEL)
    source = x if case.startswith("self") else memory
    mask, torch_masks = None, {}
    if case == "self-causal":  # PyTorch's masks say True = blocked: the opposite of ours
        mask, torch_masks = CAUSAL, {"attn_mask": ~CAUSAL}
    if case == "cross-padding":
        mask, torch_masks = KEEPS_KEY[:, None, None, :], {"key_padding_mask": ~KEEPS_KEY}
    expected, expected_weights = theirs(x, source, source, average_attn_weights=False,
                                        **torch_masks)
    assert_close(ours(x, source, source, mask), expected)
    assert_close(ours.last_attention_weights, expected_weights)


def test_multi_head_attention_uses_the_given_attention_function():
    calls = []

    def recording_attention(q, k, v, mask):
        calls.append(q.shape)
        return scaled_dot_product_attention(q, k, v, mask)[0], None

    mha = MultiHeadAttention(D_MODEL, HEADS, attention=recording_attention)
    mha(torch.randn(2, 5, D_MODEL), torch.randn(2, 5, D_MODEL), torch.randn(2, 5, D_MODEL))
    assert calls == [torch.Size([2, HEADS, 5, D_MODEL // HEADS])]
    assert mha.last_attention_weights is None


@pytest.mark.parametrize("call, words", [
    (lambda: MultiHeadAttention(30, 4), ["d_model=30", "num_heads=4"]),
    (lambda: MultiHeadAttention(0, 1), ["d_model", "0"]),
    (lambda: MultiHeadAttention(32, 4)(torch.randn(6, 32), torch.randn(6, 32),
                                       torch.randn(6, 32)), ["query", "(6, 32)"]),
    (lambda: MultiHeadAttention(32, 4)(*[torch.randn(3, 6, 32)] * 3,
                                       torch.ones(3, 5, dtype=torch.bool)),
     ["mask of shape (3, 5)", "(3, 4, 6, 6)"]),
    (lambda: scaled_dot_product_attention(torch.randn(5), torch.randn(5, 2), torch.randn(5, 2)),
     ["query", "(5,)"]),
    (lambda: PositionalEncoding(63), ["d_model", "63", "even"]),
    (lambda: PositionalEncoding(8, max_len=4)(torch.zeros(1, 5, 8)), ["5", "max_len=4"]),
])
def test_bad_input_is_a_clear_value_error(call, words):
    assert_error_names(call, words)


def test_non_boolean_mask_is_a_type_error():
    with pytest.raises(TypeError, match="boolean"):
        scaled_dot_product_attention(*[torch.randn(2, 3, 4)] * 3, torch.ones(3, 3))


@pytest.mark.parametrize("width", [2, 6, 64, 510])
def test_positional_encoding_equals_the_closed_form(width):
    table = PositionalEncoding(width, max_len=1000).encoding
    pos = torch.arange(1000, dtype=torch.float64)[:, None]
    i = torch.arange(width, dtype=torch.float64)
    angle = pos / 10000 ** ((i - i % 2) / width)
    expected = torch.where(i % 2 == 0, torch.sin(angle), torch.cos(angle))
    assert_close(table, expected.float())
    assert math.isclose(table[7, 0].item(), math.sin(7), rel_tol=1e-6)


def test_positional_encoding_is_a_buffer_that_follows_dtype():
    encoding = PositionalEncoding(16, max_len=20).to(torch.float64)
    assert encoding.encoding.dtype == torch.float64
    assert "encoding" not in encoding.state_dict() and not list(encoding.parameters())
    x = torch.zeros(2, 5, 16, dtype=torch.float64)
    assert_close(encoding(x), encoding.encoding[:5].expand(2, 5, 16))


def test_layer_norm_equals_torch():
    ours, theirs = LayerNorm(D_MODEL), nn.LayerNorm(D_MODEL)
    with torch.no_grad():
        ours.weight.normal_()
        ours.bias.normal_()
    theirs.load_state_dict(ours.state_dict())
    x = 3 + 5 * torch.randn(BATCH, TGT, D_MODEL)
    assert_close(ours(x), theirs(x))


def test_feed_forward_is_the_formula_applied_per_position():
    ffn = PositionwiseFeedForward(D_MODEL, 64)
    x = torch.randn(BATCH, TGT, D_MODEL)
    expected = (torch.relu(x @ ffn.linear1.weight.T + ffn.linear1.bias) @ ffn.linear2.weight.T
                + ffn.linear2.bias)
    assert_close(ffn(x), expected)
    assert_close(ffn(x)[:, 2], ffn(x[:, 2]))
