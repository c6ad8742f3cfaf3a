"""Day 2's proofs as unit tests: the encoder and decoder layers and stacks against PyTorch's,
the causal and padding properties, and the generator."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.testing import assert_close

from common.testing import assert_error_names
from day01_transformer import attention_weights_kept, scaled_dot_product_attention
from day02_encoder_decoder import (
    Decoder,
    DecoderLayer,
    Encoder,
    EncoderLayer,
    Generator,
    copy_into_torch_decoder,
    copy_into_torch_decoder_layer,
    copy_into_torch_encoder,
    copy_into_torch_encoder_layer,
)

D_MODEL, HEADS, D_FF, BATCH, SRC, TGT, LAYERS = 32, 4, 64, 3, 9, 6, 2
KEEPS_SOURCE = torch.arange(SRC) < torch.tensor([9, 5, 2])[:, None]     # (batch, SRC)
KEEPS_TARGET = torch.arange(TGT) < torch.tensor([6, 4, 3])[:, None]     # (batch, TGT)
SOURCE_MASK = KEEPS_SOURCE[:, None, None, :]
CAUSAL = torch.ones(TGT, TGT, dtype=torch.bool).tril()
TARGET_MASK = CAUSAL & KEEPS_TARGET[:, None, None, :]
# PyTorch's masks mean True = blocked, the opposite of ours.
TORCH_DECODER_MASKS = {"tgt_mask": ~CAUSAL, "tgt_key_padding_mask": ~KEEPS_TARGET,
                       "memory_key_padding_mask": ~KEEPS_SOURCE}


def their_encoder(norm_first, final_norm):
    layer = nn.TransformerEncoderLayer(D_MODEL, HEADS, D_FF, batch_first=True,
                                       norm_first=norm_first)
    return nn.TransformerEncoder(layer, LAYERS, norm=nn.LayerNorm(D_MODEL) if final_norm else None,
                                 enable_nested_tensor=False).eval()


def their_decoder(norm_first, final_norm):
    layer = nn.TransformerDecoderLayer(D_MODEL, HEADS, D_FF, batch_first=True,
                                       norm_first=norm_first)
    return nn.TransformerDecoder(layer, LAYERS,
                                 norm=nn.LayerNorm(D_MODEL) if final_norm else None).eval()


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
@pytest.mark.parametrize("mask", ["none", "padding", "causal", "padding-structure",
                                  "causal-structure"])
def test_encoder_layer_equals_torch(norm_first, mask):
    ours = EncoderLayer(D_MODEL, HEADS, D_FF, norm_first=norm_first).eval()
    theirs = nn.TransformerEncoderLayer(D_MODEL, HEADS, D_FF, batch_first=True,
                                        norm_first=norm_first).eval()
    copy_into_torch_encoder_layer(ours, theirs)
    x = torch.randn(BATCH, SRC, D_MODEL)
    causal = torch.ones(SRC, SRC, dtype=torch.bool).tril()
    our_masks, torch_masks = {
        "none": ({}, {}),
        "padding": ({"mask": SOURCE_MASK}, {"src_key_padding_mask": ~KEEPS_SOURCE}),
        "causal": ({"mask": causal}, {"src_mask": ~causal}),
        "padding-structure": ({"key_padding_mask": KEEPS_SOURCE},
                              {"src_key_padding_mask": ~KEEPS_SOURCE}),
        "causal-structure": ({"causal": True}, {"src_mask": ~causal}),
    }[mask]
    assert_close(ours(x, **our_masks), theirs(x, **torch_masks))


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_decoder_layer_equals_torch_with_causal_and_padding_masks(norm_first):
    ours = DecoderLayer(D_MODEL, HEADS, D_FF, norm_first=norm_first).eval()
    theirs = nn.TransformerDecoderLayer(D_MODEL, HEADS, D_FF, batch_first=True,
                                        norm_first=norm_first).eval()
    copy_into_torch_decoder_layer(ours, theirs)
    x, memory = torch.randn(BATCH, TGT, D_MODEL), torch.randn(BATCH, SRC, D_MODEL)
    assert_close(ours(x, memory), theirs(x, memory))
    assert_close(ours(x, memory, TARGET_MASK, SOURCE_MASK),
                 theirs(x, memory, **TORCH_DECODER_MASKS))


@pytest.mark.parametrize("norm_first, final_norm", [(False, None), (True, None), (False, True)],
                         ids=["post-norm", "pre-norm", "post-norm-with-final-norm"])
def test_stacks_equal_torch(norm_first, final_norm):
    encoder = Encoder(LAYERS, D_MODEL, HEADS, D_FF, norm_first=norm_first,
                      final_norm=final_norm).eval()
    decoder = Decoder(LAYERS, D_MODEL, HEADS, D_FF, norm_first=norm_first,
                      final_norm=final_norm).eval()
    has_norm = norm_first if final_norm is None else final_norm
    assert (encoder.norm is not None) == has_norm and (decoder.norm is not None) == has_norm
    theirs_encoder, theirs_decoder = their_encoder(norm_first, has_norm), their_decoder(
        norm_first, has_norm)
    copy_into_torch_encoder(encoder, theirs_encoder)
    copy_into_torch_decoder(decoder, theirs_decoder)
    source, target = torch.randn(BATCH, SRC, D_MODEL), torch.randn(BATCH, TGT, D_MODEL)
    memory = encoder(source, SOURCE_MASK)
    assert_close(memory, theirs_encoder(source, src_key_padding_mask=~KEEPS_SOURCE))
    assert_close(decoder(target, memory, TARGET_MASK, SOURCE_MASK),
                 theirs_decoder(target, memory, **TORCH_DECODER_MASKS))


def test_copy_refuses_a_different_final_norm_or_norm_placement():
    with pytest.raises(ValueError, match="ours has no final norm"):
        copy_into_torch_encoder(Encoder(LAYERS, D_MODEL, HEADS, D_FF), their_encoder(False, True))
    with pytest.raises(ValueError, match="ours has a final norm"):
        copy_into_torch_decoder(Decoder(LAYERS, D_MODEL, HEADS, D_FF, norm_first=True),
                                their_decoder(True, False))
    with pytest.raises(ValueError, match="norm_first"):
        copy_into_torch_encoder_layer(EncoderLayer(D_MODEL, HEADS, D_FF, norm_first=True),
                                      nn.TransformerEncoderLayer(D_MODEL, HEADS, D_FF))
    with pytest.raises(ValueError, match="3 layers, ours 2"):
        copy_into_torch_decoder(Decoder(LAYERS, D_MODEL, HEADS, D_FF),
                                nn.TransformerDecoder(nn.TransformerDecoderLayer(D_MODEL, HEADS),
                                                      3))


@torch.no_grad()
def test_decoder_outputs_up_to_t_ignore_later_targets():
    decoder = Decoder(LAYERS, D_MODEL, HEADS, D_FF).eval()
    target, memory = torch.randn(BATCH, TGT, D_MODEL), torch.randn(BATCH, SRC, D_MODEL)
    reference = decoder(target, memory, CAUSAL, SOURCE_MASK)
    for t in range(TGT):
        changed = target.clone()
        changed[:, t + 1:] = torch.randn(BATCH, TGT - t - 1, D_MODEL)
        output = decoder(changed, memory, CAUSAL, SOURCE_MASK)
        assert torch.equal(output[:, : t + 1], reference[:, : t + 1])
        if t + 1 < TGT:
            assert not torch.equal(output[:, t + 1:], reference[:, t + 1:])


@torch.no_grad()
def test_padded_source_positions_change_nothing_else():
    encoder = Encoder(LAYERS, D_MODEL, HEADS, D_FF).eval()
    decoder = Decoder(LAYERS, D_MODEL, HEADS, D_FF).eval()
    source, target = torch.randn(BATCH, SRC, D_MODEL), torch.randn(BATCH, TGT, D_MODEL)
    noisy = torch.where(KEEPS_SOURCE[:, :, None], source, torch.randn_like(source))
    memory = encoder(source, key_padding_mask=KEEPS_SOURCE)
    noisy_memory = encoder(noisy, key_padding_mask=KEEPS_SOURCE)
    assert torch.equal(noisy_memory[KEEPS_SOURCE], memory[KEEPS_SOURCE])
    masks = dict(causal=True, target_key_padding_mask=KEEPS_TARGET,
                 memory_key_padding_mask=KEEPS_SOURCE)
    with attention_weights_kept(decoder):
        assert torch.equal(decoder(target, noisy_memory, **masks),
                           decoder(target, memory, **masks))
    weights = decoder.layers[0].cross_attention.last_attention_weights
    assert (weights[~SOURCE_MASK.expand_as(weights)] == 0).all()


def test_post_norm_layers_end_normalized():
    x = torch.randn(2, SRC, D_MODEL)
    output = EncoderLayer(D_MODEL, HEADS, D_FF, dropout=0.0)(x)
    assert_close(output.mean(-1), torch.zeros(2, SRC), atol=1e-5, rtol=0)
    assert_close(output.var(-1, unbiased=False), torch.ones(2, SRC), atol=1e-3, rtol=0)


def test_generator_gives_log_probabilities():
    generator = Generator(D_MODEL, 11)
    x = torch.randn(BATCH, TGT, D_MODEL)
    log_probs = generator(x)
    assert log_probs.shape == (BATCH, TGT, 11)
    assert_close(log_probs.exp().sum(-1), torch.ones(BATCH, TGT))
    assert_close(log_probs, torch.log_softmax(generator.projection(x), -1))
    with torch.no_grad():
        generator.projection.weight.mul_(1e4)  # huge scores: the log stays finite
    assert generator(x).isfinite().all()


def test_dropout_is_random_in_training_and_off_in_eval():
    layer = DecoderLayer(D_MODEL, HEADS, D_FF, dropout=0.1)
    x, memory = torch.randn(BATCH, TGT, D_MODEL), torch.randn(BATCH, SRC, D_MODEL)
    assert not torch.equal(layer.train()(x, memory), layer(x, memory))
    assert torch.equal(layer.eval()(x, memory), layer(x, memory))


def test_the_attention_function_reaches_every_multi_head_attention():
    calls = []

    def counting_attention(q, k, v, mask=None, **structure):
        calls.append(q.shape)
        return scaled_dot_product_attention(q, k, v, mask, **structure)

    encoder = Encoder(3, D_MODEL, HEADS, D_FF, attention=counting_attention)
    decoder = Decoder(3, D_MODEL, HEADS, D_FF, attention=counting_attention)
    decoder(torch.randn(BATCH, TGT, D_MODEL), encoder(torch.randn(BATCH, SRC, D_MODEL)))
    assert len(calls) == 3 + 2 * 3


@pytest.mark.parametrize("call, words", [
    (lambda: Encoder(0, D_MODEL, HEADS, D_FF), ["num_layers", "0"]),
    (lambda: DecoderLayer(D_MODEL, HEADS, D_FF, dropout=1.5), ["dropout", "1.5"]),
    (lambda: Encoder(2, 30, 4, D_FF), ["d_model=30", "num_heads=4"]),
    (lambda: Generator(D_MODEL, 0), ["vocab_size", "0"]),
    (lambda: DecoderLayer(D_MODEL, HEADS, D_FF)(torch.randn(BATCH, TGT, D_MODEL),
                                                torch.randn(BATCH, SRC, 16)),
     ["memory", "(3, 9, 16)", "d_model=32"]),
    (lambda: Encoder(2, D_MODEL, HEADS, D_FF)(torch.randn(BATCH, SRC, D_MODEL),
                                              torch.ones(BATCH, 5, dtype=torch.bool)),
     ["mask of shape (3, 5)"]),
])
def test_bad_input_is_a_clear_value_error(call, words):
    assert_error_names(call, words)


@torch.no_grad()
def test_structure_arguments_equal_the_general_masks_they_describe():
    encoder = Encoder(LAYERS, D_MODEL, HEADS, D_FF).eval()
    decoder = Decoder(LAYERS, D_MODEL, HEADS, D_FF).eval()
    source, target = torch.randn(BATCH, SRC, D_MODEL), torch.randn(BATCH, TGT, D_MODEL)
    memory = encoder(source, key_padding_mask=KEEPS_SOURCE)
    assert torch.equal(memory, encoder(source, SOURCE_MASK))
    assert torch.equal(decoder(target, memory, causal=True, target_key_padding_mask=KEEPS_TARGET,
                               memory_key_padding_mask=KEEPS_SOURCE),
                       decoder(target, memory, TARGET_MASK, SOURCE_MASK))


def test_a_bool_is_not_a_number_of_layers():
    assert_error_names(lambda: Decoder(True, D_MODEL, HEADS, D_FF), ["num_layers", "True"],
                       TypeError)


def test_non_bool_norm_options_are_type_errors():
    with pytest.raises(TypeError, match="norm_first"):
        EncoderLayer(D_MODEL, HEADS, D_FF, norm_first="yes")
    with pytest.raises(TypeError, match="final_norm"):
        Decoder(LAYERS, D_MODEL, HEADS, D_FF, final_norm=1)


@pytest.mark.parametrize("call, words, error", [
    (lambda layer: layer(torch.randn(BATCH, TGT, D_MODEL), torch.randn(BATCH, SRC, D_MODEL),
                         target_key_padding_mask=KEEPS_SOURCE),
     ["target_key_padding_mask", "(3, 6)", "(3, 9)"], ValueError),
    (lambda layer: layer(torch.randn(BATCH, TGT, D_MODEL), torch.randn(BATCH, SRC, D_MODEL),
                         memory_key_padding_mask=KEEPS_TARGET),
     ["memory_key_padding_mask", "(3, 9)", "(3, 6)"], ValueError),
    (lambda layer: layer(torch.randn(BATCH, TGT, D_MODEL), torch.randn(1, SRC, D_MODEL)),
     ["x and memory", "3 and 1"], ValueError),
    (lambda layer: layer(torch.randn(BATCH, TGT, D_MODEL), torch.randn(BATCH, SRC, D_MODEL,
                                                                       dtype=torch.float64)),
     ["memory", "torch.float64"], TypeError),
    (lambda layer: layer(torch.randn(BATCH, TGT, D_MODEL), [[0.0]]), ["memory", "list"],
     TypeError),
    (lambda layer: layer(torch.randn(BATCH, TGT, D_MODEL), torch.randn(BATCH, SRC, D_MODEL),
                         memory_mask=torch.ones(SRC, SRC, dtype=torch.bool)),
     ["memory_mask", "(9, 9)"], ValueError),
])
def test_decoder_errors_name_the_users_arguments(call, words, error):
    layer = DecoderLayer(D_MODEL, HEADS, D_FF, norm_first=True)
    assert_error_names(lambda: call(layer), words, error)


def test_generator_and_layers_check_their_options_and_input():
    assert_error_names(lambda: Generator(D_MODEL, 10, bias="no"), ["bias", "'no'"], TypeError)
    assert_error_names(lambda: Generator(D_MODEL, 10)(torch.randn(2, 16)),
                       ["x", "d_model=32", "(2, 16)"])
    assert_error_names(lambda: EncoderLayer(D_MODEL, HEADS, D_FF, dropout="0.1"),
                       ["dropout", "'0.1'"], TypeError)
    assert type(EncoderLayer(D_MODEL, HEADS, D_FF, dropout=np.float32(0.25)).dropout1.p) is float
