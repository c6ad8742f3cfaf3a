"""Day 6's proofs as unit tests: the whole ViT against Hugging Face's (tiny and B/16), the
exact GELU, the parameter counts, bad input, and a short training run on the digits."""

import math
import warnings

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from common.testing import assert_error_names
from day06_vit_head import (
    VIT_CONFIGS,
    ViT,
    attention_rollout,
    copy_into_hugging_face,
    hugging_face_config,
    parameter_counts,
)
from day06_vit_head.training import accuracy, load_digits_split, train_digits
from day06_vit_head.vit import hugging_face_twin, randomize_

with warnings.catch_warnings():  # transformers' import of tqdm.auto may warn; harmless
    warnings.simplefilter("ignore")
    from transformers import ViTConfig, ViTForImageClassification
    from transformers.activations import ACT2FN

TINY = dict(image_size=32, patch_size=8, in_channels=3, num_classes=10, d_model=64,
            num_layers=2, num_heads=4, d_mlp=256)


@pytest.fixture(scope="module")
def tiny_pair():
    torch.manual_seed(0)
    ours = randomize_(ViT(**TINY)).eval()
    return ours, hugging_face_twin(ours)


def test_tiny_vit_equals_hugging_face(tiny_pair):
    ours, theirs = tiny_pair
    images = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        assert_close(ours(images), theirs(images).logits)


def test_resampled_position_embedding_equals_hugging_face(tiny_pair):
    ours, theirs = tiny_pair
    images = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        assert_close(ours(images, interpolate_position_embedding=True),
                     theirs(images, interpolate_pos_encoding=True).logits)


def test_vit_b16_equals_hugging_face_and_has_its_parameter_count():
    torch.manual_seed(0)
    ours = randomize_(ViT.from_name("B/16", image_size=224, num_classes=1000)).eval()
    theirs = hugging_face_twin(ours)
    images = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert_close(ours(images), theirs(images).logits)
    count = sum(p.numel() for p in theirs.parameters())
    assert count == sum(parameter_counts(ours).values()) == sum(
        p.numel() for p in ours.parameters())
    assert round(count / 1e6, 1) == 86.6


def test_the_activation_is_the_exact_gelu(tiny_pair):
    ours, _ = tiny_pair
    x = torch.linspace(-6, 6, 2001)
    erf_gelu = x / 2 * (1 + torch.erf(x / math.sqrt(2)))
    for block in ours.encoder.blocks:
        assert type(block.mlp.activation) is nn.GELU
        assert block.mlp.activation.approximate == "none"
        assert_close(block.mlp.activation(x), erf_gelu)
    assert_close(ACT2FN["gelu"](x), erf_gelu)


def test_the_comparison_notices_the_tanh_gelu():
    torch.manual_seed(0)
    ours = randomize_(ViT(**TINY)).eval()
    theirs = hugging_face_twin(ours, hidden_act="gelu_pytorch_tanh")
    images = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        with pytest.raises(AssertionError):
            assert_close(ours(images), theirs(images).logits)
        for block in ours.encoder.blocks:
            block.mlp.activation = nn.GELU(approximate="tanh")
        assert_close(ours(images), theirs(images).logits)


def test_copy_refuses_a_different_configuration():
    ours = ViT(**TINY)
    theirs = ViTForImageClassification(ViTConfig(**{**hugging_face_config(ours),
                                                    "layer_norm_eps": 1e-12}))
    with pytest.raises(ValueError, match="layer_norm_eps"):
        copy_into_hugging_face(ours, theirs)


def closed_form(patch_size, d_model, num_layers, num_heads, d_mlp, image_size=224,
                in_channels=3, num_classes=1000):
    D, N = d_model, (image_size // patch_size) ** 2
    return (patch_size ** 2 * in_channels * D + D + D + (N + 1) * D
            + num_layers * (4 * (D * D + D) + 2 * D * d_mlp + d_mlp + D + 4 * D)
            + 2 * D + D * num_classes + num_classes)


@pytest.mark.parametrize("name, millions", [("Ti/16", 5.7), ("S/16", 22.1), ("B/16", 86.6),
                                            ("L/16", 304.3)])
def test_parameter_counts_of_the_named_sizes(name, millions):
    with torch.device("meta"):
        model = ViT.from_name(name)
    counts = parameter_counts(model)
    total = sum(p.numel() for p in model.parameters())
    assert sum(counts.values()) == total == closed_form(**VIT_CONFIGS[name])
    assert round(total / 1e6, 1) == millions
    assert counts["position embedding"] == 197 * VIT_CONFIGS[name]["d_model"]


def test_named_sizes_are_the_papers():
    expected = {"Ti/16": (192, 12, 3), "S/16": (384, 12, 6), "B/16": (768, 12, 12),
                "L/16": (1024, 24, 16)}
    for name, (width, depth, heads) in expected.items():
        config = VIT_CONFIGS[name]
        assert (config["d_model"], config["num_layers"], config["num_heads"]) == (
            width, depth, heads)
        assert config["d_mlp"] == 4 * width and config["patch_size"] == 16


@pytest.mark.parametrize("call, words", [
    (lambda m: m(torch.randn(1, 3, 48, 48)), ["48x48", "32x32", "interpolate_position_embedding"]),
    (lambda m: m(torch.randn(1, 3, 36, 32)), ["36x32", "patch_size=8"]),
    (lambda m: m(torch.randn(1, 1, 32, 32)), ["1 channels", "in_channels=3"]),
    (lambda m: m(torch.randn(3, 32, 32)), ["4-D", "(3, 32, 32)"]),
    (lambda m: ViT(image_size=30, patch_size=8), ["30x30", "patch_size=8"]),
    (lambda m: ViT.from_name("H/14"), ["'H/14'", "B/16"]),
    (lambda m: ViT(**{**TINY, "num_classes": 0}), ["num_classes", "0"]),
])
def test_bad_input_is_a_value_error_with_the_numbers(call, words):
    model = ViT(**TINY)
    assert_error_names(lambda: call(model), words)


@pytest.mark.parametrize("call, words, error", [
    (lambda m: m(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)), ["torch.uint8", "/ 255"],
     TypeError),
    (lambda m: m(torch.zeros(1, 3, 32, 32, dtype=torch.float64)), ["torch.float64"], TypeError),
    (lambda m: ViT(image_size=8.0), ["image_size", "8.0"], TypeError),
    (lambda m: train_digits(batch_size=0), ["batch_size", "0"], ValueError),
    (lambda m: train_digits(mixup=-1), ["mixup", "-1"], ValueError),
    (lambda m: train_digits(epochs=True), ["epochs", "True"], TypeError),
    (lambda m: accuracy(m, torch.zeros(0, 3, 32, 32), torch.zeros(0, dtype=torch.long)),
     ["images", "at least one", "0"], ValueError),
])
def test_bad_types_and_empty_inputs_get_errors_that_name_them(call, words, error):
    model = ViT(**TINY)
    assert_error_names(lambda: call(model), words, error)


def test_the_head_reads_only_the_class_token():
    model = ViT(**TINY).eval()
    z = torch.randn(3, 17, 64)
    changed = torch.cat([z[:, :1], torch.randn(3, 16, 64)], dim=1)
    assert torch.equal(model.head(z), model.head(changed))


def test_the_attention_argument_reaches_every_block():
    from day01_transformer import scaled_dot_product_attention

    calls = []

    def recording_attention(query, key, value, mask=None, **structure):
        calls.append(tuple(query.shape))
        return scaled_dot_product_attention(query, key, value, mask, **structure)

    model = ViT(**TINY, attention=recording_attention)
    model(torch.randn(2, 3, 32, 32))
    assert calls == [(2, 4, 17, 16)] * 2


def test_digits_split_is_fixed_and_stratified():
    x_train, y_train, x_test, y_test = load_digits_split()
    again = load_digits_split()
    assert torch.equal(x_test, again[2]) and torch.equal(y_test, again[3])
    assert x_train.shape == (1347, 1, 8, 8) and x_test.shape == (450, 1, 8, 8)
    assert x_train.min() == -1 and x_train.max() == 1
    assert (torch.bincount(y_test, minlength=10) >= 43).all()


def test_a_short_training_run_learns_the_digits():
    run = train_digits(epochs=8, num_threads=1)
    assert len(run.history["test accuracy"]) == 8
    assert run.test_accuracy > 0.7  # chance is 0.1
    assert run.history["train loss"][-1] < run.history["train loss"][0]


def test_flags_and_rates_are_not_truthy_strings():
    model = ViT(**TINY)
    assert_error_names(lambda: model(torch.randn(1, 3, 48, 48), "no"),
                       ["interpolate_position_embedding", "'no'"], TypeError)
    assert_error_names(lambda: ViT(**TINY, dropout="0.1"), ["dropout", "'0.1'"], TypeError)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_without_mixup_the_vit_falls_below_logistic_regression(seed):
    """The mixup ablation the notebook cites: without mixup the ViT falls below logistic
    regression on the pixels (with it, the notebook's run is at about that floor)."""
    from sklearn.linear_model import LogisticRegression

    x_train, y_train, x_test, y_test = load_digits_split()
    logistic = LogisticRegression(max_iter=2000).fit(x_train.flatten(1).numpy(),
                                                     y_train.numpy())
    without = train_digits(mixup=0, seed=seed, num_threads=1)
    assert without.test_accuracy < logistic.score(x_test.flatten(1).numpy(), y_test.numpy())


def test_attention_rollout_multiplies_the_blocks_with_the_residual_added():
    # Two tokens, two blocks of two heads. Block 1 (averaged over heads): token 0 reads token 1
    # only; block 2: both tokens read token 1 only. With the residual, 0.5 A + 0.5 I.
    first = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]] * 2])   # (1, 2, 2, 2)
    second = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]]])
    mixed_first = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    mixed_second = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    assert_close(attention_rollout([first, second])[0], mixed_second @ mixed_first)
    random = [torch.softmax(torch.randn(3, 4, 5, 5), -1) for _ in range(3)]
    assert_close(attention_rollout(random).sum(-1), torch.ones(3, 5))
    assert_error_names(lambda: attention_rollout([first, None]), ["weights", "None"])
    assert_error_names(lambda: attention_rollout([first, torch.rand(1, 2, 3, 3)]),
                       ["weights", "(1, 2, 2, 2)", "(1, 2, 3, 3)"])
