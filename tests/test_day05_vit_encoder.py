"""Day 5's proofs as unit tests: the pre-norm ViT block and encoder against PyTorch, and the
post-norm comparison's claim."""

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from common.testing import assert_error_names
from day01_transformer import (
    attention_weights_kept,
    scaled_dot_product_attention,
)
from day02_encoder_decoder import Encoder
from day05_vit_encoder import ViTBlock, ViTEncoder
from day05_vit_encoder.encoder import copy_into_torch_layer, torch_layer

D_MODEL, HEADS, D_MLP = 48, 3, 192


def randomize_norms(module):
    """LayerNorms start at weight 1, bias 0; random values make the copy test meaningful."""
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if "norm" in name:
                parameter.normal_()


def test_the_mlp_uses_the_exact_gelu():
    x = torch.linspace(-5, 5, 1001, dtype=torch.float64)
    activation = ViTBlock(D_MODEL, HEADS, D_MLP).mlp.activation
    assert_close(activation(x), x / 2 * (1 + torch.erf(x / math.sqrt(2))))
    tanh_form = nn.functional.gelu(x, approximate="tanh")
    assert (activation(x) - tanh_form).abs().max() > 4e-4


def test_block_equals_torch_pre_norm_layer_and_the_equations():
    block = ViTBlock(D_MODEL, HEADS, D_MLP).eval()
    reference = torch_layer(D_MODEL, HEADS, D_MLP).eval()
    randomize_norms(block)
    copy_into_torch_layer(block, reference)
    z = torch.randn(2, 17, D_MODEL)
    assert_close(block(z), reference(z))
    normed = block.norm1(z)
    z_prime = z + block.self_attention(normed, normed, normed)
    mlp = block.mlp.linear2(nn.functional.gelu(block.mlp.linear1(block.norm2(z_prime))))
    assert_close(block(z), z_prime + mlp)


def test_layer_norm_epsilon_is_the_vit_one():
    block = ViTBlock(D_MODEL, HEADS, D_MLP)
    assert block.norm1.eps == block.norm2.eps == 1e-6


def test_encoder_equals_torch_encoder_and_keeps_every_blocks_attention():
    encoder = ViTEncoder(3, D_MODEL, HEADS, D_MLP).eval()
    randomize_norms(encoder)
    reference = nn.TransformerEncoder(torch_layer(D_MODEL, HEADS, D_MLP), num_layers=3, norm=None,
                                      enable_nested_tensor=False).eval()
    for ours, theirs in zip(encoder.blocks, reference.layers, strict=True):
        copy_into_torch_layer(ours, theirs)
    z = torch.randn(2, 17, D_MODEL)
    assert_close(encoder(z), reference(z))
    assert encoder.last_attention_weights == [None] * 3  # kept only when asked
    with attention_weights_kept(encoder):
        encoder(z)
    weights = encoder.last_attention_weights
    assert len(weights) == 3 and all(w.shape == (2, HEADS, 17, 17) for w in weights)
    assert_close(weights[0].sum(-1), torch.ones(2, HEADS, 17))


def test_the_attention_argument_reaches_every_block():
    calls = []

    def recording_attention(query, key, value, mask=None, **structure):
        calls.append(tuple(query.shape))
        return scaled_dot_product_attention(query, key, value, mask, **structure)

    encoder = ViTEncoder(3, D_MODEL, HEADS, D_MLP, attention=recording_attention).eval()
    plain = ViTEncoder(3, D_MODEL, HEADS, D_MLP).eval()
    plain.load_state_dict(encoder.state_dict())
    z = torch.randn(2, 5, D_MODEL)
    assert_close(encoder(z), plain(z))
    assert calls == [(2, HEADS, 5, D_MODEL // HEADS)] * 3


def test_a_mask_is_passed_to_attention():
    encoder = ViTEncoder(2, D_MODEL, HEADS, D_MLP).eval()
    z = torch.randn(1, 6, D_MODEL)
    keeps = torch.tensor([True] * 4 + [False] * 2)  # the last two tokens are padding
    with attention_weights_kept(encoder):
        masked = encoder(z, key_padding_mask=keeps[None])
    assert (encoder.last_attention_weights[-1][..., 4:] == 0).all()
    assert_close(masked[:, :4], encoder(z[:, :4]))
    assert torch.equal(masked, encoder(z, keeps[None, None, None, :]))  # as a general mask


@pytest.mark.parametrize("call, words", [
    (lambda: ViTEncoder(0, D_MODEL, HEADS, D_MLP), ["num_layers", "0"]),
    (lambda: ViTBlock(50, 3, D_MLP), ["d_model=50", "num_heads=3"]),
    (lambda: ViTBlock(D_MODEL, HEADS, D_MLP)(torch.randn(2, 5, 64)), ["48", "(2, 5, 64)"]),
    (lambda: ViTBlock(D_MODEL, HEADS, D_MLP, eps=-1e-6), ["eps", "-1e-06"]),
    (lambda: ViTBlock(D_MODEL, HEADS, D_MLP, eps=0.0), ["eps", "0.0"]),
])
def test_bad_configuration_or_input_is_a_value_error(call, words):
    assert_error_names(call, words)


def test_post_norm_stalls_where_pre_norm_trains_without_warm_up():
    """The notebook's experiment, smaller: Adam at lr 1e-2, no warm-up, 6 blocks."""
    torch.manual_seed(0)
    tokens = torch.randn(256, 8, 32)
    labels = (tokens[:, :, 0].sum(1) > 0).long()  # a learnable two-class rule
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = {}
        for name, norm_first in (("post", False), ("pre", True)):
            torch.manual_seed(0)
            stack = Encoder(6, 32, 4, 128, dropout=0.0, norm_first=norm_first)
            classify = nn.Linear(32, 2)
            optimizer = torch.optim.Adam([*stack.parameters(), *classify.parameters()], lr=1e-2)
            gradients = []
            for step in range(60):
                batch = slice(64 * (step % 4), 64 * (step % 4 + 1))
                loss = nn.functional.cross_entropy(classify(stack(tokens[batch]).mean(1)),
                                                   labels[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                gradients.append([torch.cat([p.grad.flatten() for p in layer.parameters()]).norm()
                                  for layer in stack.layers])
            results[name] = torch.tensor(gradients)[-10:].mean(0)
    finally:
        torch.set_num_threads(threads)
    post, pre = results["post"], results["pre"]
    assert post[0] < 1e-2 * post[-1]  # the lowest block's gradient has all but vanished
    assert pre[0] > 0.5 * pre[-1]
