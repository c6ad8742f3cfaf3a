"""The models compile as one graph (CONTRIBUTING.md, "One attention interface"): no `forward`
branches in Python on tensor values, which would be a graph break under torch.compile and a
host synchronisation on a GPU. `aot_eager` traces forward and backward without needing a C
compiler; `fullgraph=True` turns any graph break into an error."""

import pytest
import torch
from torch.testing import assert_close

from day01_transformer import MultiHeadAttention, scaled_dot_product_attention
from day03_transformer_tests import Transformer, pad_sequences, padding_mask
from day06_vit_head import DIGITS_VIT, ViT
from day07_flash_attention import as_attention_function, tiled_attention
from day08_mixture_of_experts import MixtureOfExperts, moe_vit
from day09_mamba import MambaLM
from day13_detection import CenterNet, DetectorConfig

ATTENTIONS = {"standard": scaled_dot_product_attention,
              "tiled": as_attention_function(tiled_attention)}


@pytest.fixture(autouse=True)
def _fresh_compile_cache():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def assert_compiled_equal(model, *args, **kwargs):
    """The compiled model gives the eager model's outputs and parameter gradients."""
    results = []
    for run in (model, torch.compile(model, fullgraph=True, backend="aot_eager")):
        model.zero_grad()
        output = run(*args, **kwargs)
        output.square().sum().backward()
        results.append([output.detach()] + [p.grad.clone() for p in model.parameters()])
    assert_close(results[1], results[0])


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_multi_head_attention_compiles(attention):
    mha = MultiHeadAttention(16, 4, attention=ATTENTIONS[attention])
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    keeps = torch.tensor([[True] * 7, [True] * 3 + [False] * 4])
    assert_compiled_equal(mha, x, x, x, causal=True)
    assert_compiled_equal(mha, x, memory, memory, key_padding_mask=keeps)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_transformer_with_masks_compiles(attention):
    torch.manual_seed(0)
    model = Transformer(12, 12, num_layers=2, d_model=16, num_heads=4, d_ff=32, dropout=0.0,
                        attention=ATTENTIONS[attention])
    source = pad_sequences([[3, 4, 5, 6, 2], [7, 8, 2]])
    target = pad_sequences([[1, 6, 5, 4, 3], [1, 8, 7]])
    assert_compiled_equal(model, source, target, source_key_padding_mask=padding_mask(source),
                          target_key_padding_mask=padding_mask(target), causal=True)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_vit_compiles(attention):
    torch.manual_seed(0)
    model = ViT(**{**DIGITS_VIT, "num_layers": 2}, attention=ATTENTIONS[attention])
    assert_compiled_equal(model, torch.randn(3, 1, 8, 8))


def test_compiled_transformer_still_refuses_token_ids_out_of_range():
    model = Transformer(12, 12, num_layers=1, d_model=16, num_heads=4, d_ff=32, dropout=0.0)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    ids = torch.tensor([[3, 4, 12]])
    with pytest.raises(RuntimeError, match=r"source token ids must be in \[0, 12\)"):
        compiled(ids, ids)


@pytest.mark.parametrize("expert", ["swiglu", "gelu"])
def test_moe_layer_compiles_with_the_gathered_dispatch(expert):
    """The sorted dispatch reads each expert's share on the host (a graph break); the gathered
    one keeps every shape fixed."""
    torch.manual_seed(0)
    layer = MixtureOfExperts(16, 32, 8, 2, expert=expert, dispatch="gathered")
    assert_compiled_equal(layer, torch.randn(2, 5, 16))


def test_moe_vit_compiles_with_the_gathered_dispatch():
    torch.manual_seed(0)
    model = moe_vit({**DIGITS_VIT, "num_layers": 2}, num_experts=4, dispatch="gathered")
    assert_compiled_equal(model, torch.randn(2, 1, 8, 8))


@pytest.mark.parametrize("scan", ["sequential", "associative"])
def test_mamba_compiles_and_a_new_length_compiles_again(scan):
    """Both scans loop in Python over the length (L steps, or log2 L levels): torch.compile
    unrolls the loop, so the graph grows with the length and another length is another graph
    (unless the length is marked dynamic). The Day 9 notebook says so."""
    torch.manual_seed(0)
    model = MambaLM(vocab_size=8, d_model=8, num_layers=1, d_state=4, scan=scan)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    tokens = torch.randint(0, 8, (2, 6))
    assert_close(compiled(tokens), model(tokens))
    before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    compiled(torch.randint(0, 8, (2, 6)))  # the same length: the same graph
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == before
    compiled(torch.randint(0, 8, (2, 9)))  # another length: compiled again
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == before + 1


class _Concatenated(torch.nn.Module):
    """A model whose forward returns a dict, with its outputs in one tensor."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *args):
        return torch.cat(list(self.model(*args).values()), dim=1)


@pytest.mark.parametrize("backbone", ["conv", "vit"])
def test_centernet_compiles(backbone):
    torch.manual_seed(0)
    model = _Concatenated(CenterNet(DetectorConfig(backbone)))
    assert_compiled_equal(model, torch.rand(2, 1, 64, 64))
