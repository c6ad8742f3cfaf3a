"""Day 1's proofs as unit tests: each component against an independent reference."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.testing import assert_close

from common.testing import assert_error_names
from day01_transformer import (
    LayerNorm,
    MultiHeadAttention,
    PositionalEncoding,
    PositionwiseFeedForward,
    attention_weights_kept,
    copy_into_torch_attention,
    scaled_dot_product_attention,
)

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
    ours = MultiHeadAttention(D_MODEL, HEADS, keep_attention_weights=True)
    theirs = nn.MultiheadAttention(D_MODEL, HEADS, batch_first=True)
    copy_into_torch_attention(ours, theirs)
    return ours, theirs


CAUSAL = torch.ones(TGT, TGT, dtype=torch.bool).tril()
KEEPS_KEY = torch.arange(SRC) < torch.tensor([SRC, 5, 2])[:, None]


# PyTorch's masks say True = blocked: the opposite of ours
MHA_CASES = {
    "self": ("self", {}, {}),
    "self-causal": ("self", {"causal": True}, {"attn_mask": ~CAUSAL}),
    "self-general-mask": ("self", {"mask": CAUSAL}, {"attn_mask": ~CAUSAL}),
    "cross": ("cross", {}, {}),
    "cross-padding": ("cross", {"key_padding_mask": KEEPS_KEY}, {"key_padding_mask": ~KEEPS_KEY}),
    "cross-padding-as-general-mask": ("cross", {"mask": KEEPS_KEY[:, None, None, :]},
                                      {"key_padding_mask": ~KEEPS_KEY}),
}


@pytest.mark.parametrize("case", MHA_CASES)
def test_multi_head_attention_equals_torch(attention_pair, case):
    ours, theirs = attention_pair
    kind, our_masks, torch_masks = MHA_CASES[case]
    x, memory = torch.randn(BATCH, TGT, D_MODEL), torch.randn(BATCH, SRC, D_MODEL)
    source = x if kind == "self" else memory
    expected, expected_weights = theirs(x, source, source, average_attn_weights=False,
                                        **torch_masks)
    assert_close(ours(x, source, source, **our_masks), expected)
    assert_close(ours.last_attention_weights, expected_weights)


def test_multi_head_attention_passes_the_mask_structure_as_it_is():
    calls = []

    def recording_attention(q, k, v, mask=None, **structure):
        calls.append((q.shape, mask, structure))
        return scaled_dot_product_attention(q, k, v, mask, **structure)[0], None

    mha = MultiHeadAttention(D_MODEL, HEADS, attention=recording_attention)
    x, memory = torch.randn(BATCH, TGT, D_MODEL), torch.randn(BATCH, SRC, D_MODEL)
    mha(x, memory, memory, key_padding_mask=KEEPS_KEY)
    mha(x, x, x, causal=True)
    assert calls[0][0] == torch.Size([BATCH, HEADS, TGT, D_MODEL // HEADS])
    assert calls[0][1] is None and calls[0][2]["key_padding_mask"] is KEEPS_KEY
    assert calls[1][2] == {"key_padding_mask": None, "causal": True}
    assert mha.last_attention_weights is None


def test_structure_arguments_equal_the_dense_masks_they_describe():
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    keeps = torch.rand(2, 7) > 0.3
    bottom_right = torch.ones(5, 7, dtype=torch.bool).tril(diagonal=2)
    general = torch.rand(5, 7) > 0.2
    both, _ = scaled_dot_product_attention(q, k, v, general, key_padding_mask=keeps, causal=True)
    dense = general & bottom_right & keeps[:, None, None, :]
    assert torch.equal(both, scaled_dot_product_attention(q, k, v, dense)[0])
    square = torch.randn(2, 3, 7, 8)
    assert_close(scaled_dot_product_attention(square, k, v, causal=True)[0],
                 nn.functional.scaled_dot_product_attention(square, k, v, is_causal=True))


def test_a_padding_mask_passed_as_the_general_mask_is_read_as_query_by_key():
    """The ambiguity that `key_padding_mask` removes: (batch, key_len) broadcasts as (Lq, Lk)."""
    q, k, v = torch.randn(3, 1, 3, 8), torch.randn(3, 1, 4, 8), torch.randn(3, 1, 4, 8)
    padding = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    intended = scaled_dot_product_attention(q, k, v, key_padding_mask=padding)[0]
    assert torch.equal(intended, scaled_dot_product_attention(q, k, v,
                                                              padding[:, None, None, :])[0])
    assert not torch.allclose(intended, scaled_dot_product_attention(q, k, v, padding)[0])


def test_attention_weights_are_kept_only_when_asked():
    mha = MultiHeadAttention(D_MODEL, HEADS)
    model = nn.Sequential(mha)
    x = torch.randn(2, 5, D_MODEL)
    mha(x, x, x)
    assert mha.last_attention_weights is None
    with attention_weights_kept(model):
        mha(x, x, x)
        assert mha.last_attention_weights.shape == (2, HEADS, 5, 5)
    assert mha.keep_attention_weights is False  # restored
    mha(x, x, x)
    assert mha.last_attention_weights is None


def test_empty_batch_gives_an_empty_output():
    mha = MultiHeadAttention(D_MODEL, HEADS)
    x = torch.randn(0, 5, D_MODEL)
    assert mha(x, x, x, causal=True).shape == (0, 5, D_MODEL)


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
    (lambda: scaled_dot_product_attention(torch.randn(2, 5, 8), torch.randn(3, 7, 8),
                                          torch.randn(3, 7, 8)), ["query and key", "(2, 5, 8)",
                                                                  "(3, 7, 8)"]),
    (lambda: scaled_dot_product_attention(torch.randn(2, 5, 8), torch.randn(2, 7, 8),
                                          torch.randn(2, 6, 8)), ["key and value", "(2, 6, 8)"]),
    (lambda: MultiHeadAttention(32, 4)(*[torch.randn(3, 6, 32)] * 3,
                                       key_padding_mask=torch.ones(3, 1, 1, 6, dtype=torch.bool)),
     ["key_padding_mask", "(3, 6)", "(3, 1, 1, 6)"]),
    (lambda: LayerNorm(8, eps=-1e-5), ["eps", "-1e-05"]),
    (lambda: LayerNorm(8)(torch.tensor(1.0)), ["x", "d_model=8", "()"]),
    (lambda: PositionwiseFeedForward(8, 16, dropout=1.0), ["dropout", "1.0"]),
])
def test_bad_input_is_a_clear_value_error(call, words):
    assert_error_names(call, words)


@pytest.mark.parametrize("call, words", [
    (lambda: scaled_dot_product_attention(*[torch.ones(2, 3, 4, dtype=torch.long)] * 3),
     ["query", "torch.int64"]),
    (lambda: scaled_dot_product_attention(*[torch.ones(2, 3, 4, dtype=torch.bool)] * 3),
     ["query", "torch.bool"]),
    (lambda: scaled_dot_product_attention(torch.randn(2, 3, 4), torch.randn(2, 3, 4).double(),
                                          torch.randn(2, 3, 4)), ["query", "key", "float64"]),
    (lambda: scaled_dot_product_attention(*[torch.randn(2, 3, 4)] * 3, causal="yes"),
     ["causal", "'yes'"]),
    (lambda: MultiHeadAttention(32, 4)(*[torch.randn(3, 6, 32).double()] * 3),
     ["query", "torch.float64", "torch.float32"]),
    (lambda: MultiHeadAttention(32, 4)(*[torch.ones(3, 6, 32, dtype=torch.long)] * 3),
     ["query", "torch.int64"]),
    (lambda: MultiHeadAttention(8, True), ["num_heads", "True"]),
    (lambda: MultiHeadAttention(8.0, 2), ["d_model", "8.0"]),
    (lambda: MultiHeadAttention(32, 4)(*[torch.randn(3, 6, 32)] * 3,
                                       key_padding_mask=torch.ones(3, 6)),
     ["key_padding_mask", "boolean", "float32"]),
])
def test_bad_input_type_is_a_clear_type_error(call, words):
    assert_error_names(call, words, TypeError)


def test_numpy_sizes_count_as_ints():
    assert MultiHeadAttention(np.int64(8), np.int64(2)).num_heads == 2


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


def test_an_attention_function_that_breaks_the_interface_is_named():
    mha = MultiHeadAttention(8, 2, attention=lambda q, k, v, mask=None, **structure: q)
    x = torch.randn(2, 4, 8)  # a batch of 2 would otherwise unpack as (output, weights)
    assert_error_names(lambda: mha(x, x, x), ["attention", "(output, weights or None)",
                                              "Tensor"], TypeError)


def test_a_mask_on_another_device_is_named():
    q = torch.randn(1, 4, 8)
    meta = torch.ones(4, 4, dtype=torch.bool, device="meta")
    assert_error_names(lambda: scaled_dot_product_attention(q, q, q, meta),
                       ["mask", "meta", "cpu"])
    keys = torch.ones(1, 4, dtype=torch.bool, device="meta")
    assert_error_names(lambda: scaled_dot_product_attention(q, q, q, key_padding_mask=keys),
                       ["key_padding_mask", "meta", "cpu"])


@pytest.mark.parametrize("layer", [LayerNorm(8), PositionwiseFeedForward(8, 16)])
def test_layers_name_an_input_that_is_not_a_float_tensor(layer):
    assert_error_names(lambda: layer([[1.0] * 8]), ["x", "torch.Tensor", "list"], TypeError)
    assert_error_names(lambda: layer(torch.ones(2, 8, dtype=torch.long)), ["x", "torch.int64"],
                       TypeError)
