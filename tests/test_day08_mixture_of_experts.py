"""Day 8: the router, the experts, the two dispatches, capacity, the auxiliary losses, the MoE
layer against Hugging Face's Mixtral and Qwen2-MoE blocks, the MoE ViT, the cost formulas and
the bad inputs. The notebook's experiment (five seeds) runs under nbval."""

import copy
import io
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.testing import assert_close

from common import checks
from common.benchmark import counted_flops
from common.testing import assert_error_names
from day05_vit_encoder import ViTBlock
from day06_vit_head import ViT
from day08_mixture_of_experts import (
    MixtureOfExperts,
    Router,
    Routing,
    SwiGLUExpert,
    auxiliary_loss,
    expert_capacity,
    expert_share,
    gathered_dispatch,
    hugging_face_twin,
    load_balancing_loss,
    make_expert,
    moe_layers,
    moe_vit,
    mutual_information,
    naive_dispatch,
    parameter_counts,
    router_z_loss,
    share_entropy,
    sorted_dispatch,
    train_moe_digits,
)
from day08_mixture_of_experts.moe import hugging_face_state_dict, run_with_router_logits
from day08_mixture_of_experts.proofs import outputs_and_gradients

with warnings.catch_warnings():  # transformers' import of tqdm.auto may warn; harmless
    warnings.simplefilter("ignore")
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

CONFIG = dict(image_size=8, patch_size=2, in_channels=1, num_classes=10, d_model=32,
              num_layers=2, num_heads=4, d_mlp=64)


# ------------------------------------------------------------------------------ the router
def test_renormalised_top_k_weights_are_a_softmax_over_the_top_k_logits():
    router = Router(16, 8, top_k=2)
    routing = router(torch.randn(30, 16))
    assert_close(routing.weights, routing.logits.gather(1, routing.experts).softmax(-1))
    assert routing.probabilities.dtype == torch.float32
    assert (routing.experts[:, 0] == routing.probabilities.argmax(-1)).all()


def test_switch_routing_keeps_the_probability_of_its_one_expert():
    routing = Router(16, 8, top_k=1, renormalize=False)(torch.randn(30, 16))
    assert_close(routing.weights[:, 0], routing.probabilities.max(-1).values)


def test_noise_is_added_while_training_only():
    router = Router(16, 8, noisy=True)
    x = torch.randn(30, 16)
    assert not torch.equal(router(x).logits, router(x).logits)
    router.eval()
    assert torch.equal(router(x).logits, router(x).logits)
    assert_close(router(x).logits, router.gate(x))


@pytest.mark.parametrize("call, words", [
    (lambda: Router(16, 4, top_k=5), ["top_k", "num_experts=4", "5"]),
    (lambda: Router(16, 4, top_k=0), ["top_k", "0"]),
    (lambda: Router(16, 0), ["num_experts", "0"]),
    (lambda: Router(0, 4), ["d_model", "0"]),
])
def test_bad_router_configurations_name_the_argument(call, words):
    assert_error_names(call, words)


def test_bad_router_inputs_name_the_argument():
    router = Router(16, 4)
    assert_error_names(lambda: router(torch.randn(3, 12)), ["d_model=16", "(3, 12)"])
    assert_error_names(lambda: router(torch.randn(2, 3, 16)), ["x", "2"])
    assert_error_names(lambda: Router(16, 4, renormalize="yes"), ["renormalize"], TypeError)


# ----------------------------------------------------------------------------- the experts
def test_swiglu_expert_is_its_formula_and_the_gelu_expert_is_day_5s_mlp():
    expert = SwiGLUExpert(16, 32)
    x = torch.randn(5, 16)
    gate, up, down = expert.w1.weight, expert.w3.weight, expert.w2.weight
    assert_close(expert(x), (torch.nn.functional.silu(x @ gate.T) * (x @ up.T)) @ down.T)
    assert isinstance(make_expert("gelu", 16, 32).activation, nn.GELU)
    assert isinstance(make_expert("relu", 16, 32).activation, nn.ReLU)
    assert_error_names(lambda: make_expert("tanh", 16, 32), ["expert", "tanh", "swiglu"])


# ---------------------------------------------------------------------------- the dispatch
@pytest.mark.parametrize("top_k", [1, 2, 3])
@pytest.mark.parametrize("kind", ["swiglu", "gelu"])
def test_sorted_dispatch_equals_the_naive_one_in_outputs_and_gradients(top_k, kind):
    router = Router(16, 6, top_k)
    experts = nn.ModuleList(make_expert(kind, 16, 24) for _ in range(6))
    x = torch.randn(50, 16)
    naive = outputs_and_gradients(naive_dispatch, x, router, experts)
    efficient = outputs_and_gradients(sorted_dispatch, x, router, experts)
    for theirs, ours in zip(naive, efficient, strict=True):
        assert_close(ours, theirs)


def test_all_experts_without_renormalisation_is_the_soft_mixture():
    router = Router(16, 5, top_k=5, renormalize=False)
    experts = nn.ModuleList(SwiGLUExpert(16, 24) for _ in range(5))
    x = torch.randn(20, 16)
    routing = router(x)
    mixture = sum(routing.probabilities[:, [i]] * experts[i](x) for i in range(5))
    assert_close(sorted_dispatch(x, experts, routing)[0], mixture)


@pytest.mark.parametrize("top_k", [1, 2, 3])
@pytest.mark.parametrize("kind", ["swiglu", "gelu", "relu"])
def test_gathered_dispatch_equals_the_sorted_one_in_outputs_and_gradients(top_k, kind):
    router = Router(16, 6, top_k)
    experts = nn.ModuleList(make_expert(kind, 16, 12) for _ in range(6))
    x = torch.randn(25, 16)
    gathered = outputs_and_gradients(gathered_dispatch, x, router, experts)
    for ours, theirs in zip(gathered, outputs_and_gradients(sorted_dispatch, x, router, experts),
                            strict=True):
        assert_close(ours, theirs)


def test_gathered_dispatch_refuses_experts_it_cannot_stack_and_a_capacity():
    router, x = Router(8, 2, 1), torch.randn(3, 8)
    experts = nn.ModuleList(nn.Linear(8, 8) for _ in range(2))
    assert_error_names(lambda: gathered_dispatch(x, experts, router(x)),
                       ["SwiGLUExpert", "PositionwiseFeedForward", "Linear"], TypeError)
    assert_error_names(lambda: MixtureOfExperts(8, 16, 4, 2, dispatch="gathered",
                                                capacity_factor=1.0),
                       ["dispatch='gathered'", "capacity"])


def test_an_expert_that_no_token_chose_is_skipped():
    router = Router(16, 4, top_k=1)
    with torch.no_grad():
        router.gate.weight.zero_()
        router.gate.weight[2] = 0.0
        router.gate.weight[0, 0] = 100.0  # every token with x[0] > 0 picks expert 0
    x = torch.randn(20, 16).abs()
    experts = nn.ModuleList(SwiGLUExpert(16, 8) for _ in range(4))
    output, kept = sorted_dispatch(x, experts, router(x))
    assert kept.all()
    assert_close(output, naive_dispatch(x, experts, router(x)))


# -------------------------------------------------------------------------------- capacity
def test_a_capacity_factor_of_n_over_k_drops_nothing():
    router, experts = Router(16, 8, 2), nn.ModuleList(SwiGLUExpert(16, 8) for _ in range(8))
    x = torch.randn(40, 16)
    routing = router(x)
    capacity = expert_capacity(40, 8, 2, 8 / 2)
    output, kept = sorted_dispatch(x, experts, routing, capacity)
    assert capacity == 40 and kept.all()
    assert_close(output, sorted_dispatch(x, experts, routing)[0])


def test_a_small_capacity_drops_second_choices_first_and_zeroes_lost_tokens():
    router, experts = Router(16, 8, 2), nn.ModuleList(SwiGLUExpert(16, 8) for _ in range(8))
    x = torch.randn(64, 16)
    routing = router(x)
    output, kept = sorted_dispatch(x, experts, routing, capacity=expert_capacity(64, 8, 2, 0.5))
    assert 0 < (~kept).sum() < kept.numel()
    per_expert = torch.bincount(routing.experts[kept], minlength=8)
    assert (per_expert <= 8).all()
    for e in range(8):
        if (kept[:, 1] & (routing.experts[:, 1] == e)).any():
            assert kept[:, 0][routing.experts[:, 0] == e].all()
    lost = ~kept.any(-1)
    assert lost.any() and (output[lost] == 0).all()


def test_dropped_tokens_pass_through_the_blocks_residual():
    block = ViTBlock(16, 2, 32).eval()
    block.mlp = MixtureOfExperts(16, 16, 8, 2, capacity_factor=0.5)
    z = torch.randn(2, 20, 16)
    with torch.no_grad():
        normed = block.norm1(z)
        z_prime = z + block.self_attention(normed, normed, normed)
        output = block(z)
    lost = ~block.mlp.last_kept.any(-1).view(2, 20)
    assert lost.any() and block.mlp.dropped_fraction > 0
    assert torch.equal(output[lost], z_prime[lost])


@pytest.mark.parametrize("call, words", [
    (lambda: MixtureOfExperts(16, 32, 4, 2, capacity_factor=0), ["capacity_factor", "0"]),
    (lambda: MixtureOfExperts(16, 32, 4, 2, capacity_factor=-1.5), ["capacity_factor", "-1.5"]),
    (lambda: MixtureOfExperts(16, 32, 4, 2, capacity_factor=1.0, dispatch="naive"),
     ["capacity_factor", "sorted"]),
    (lambda: MixtureOfExperts(16, 32, 4, 2, dispatch="fast"), ["dispatch", "fast", "naive"]),
    (lambda: MixtureOfExperts(16, 32, 4, 5), ["top_k", "num_experts=4"]),
    (lambda: MixtureOfExperts(16, 32, 0, 1), ["num_experts", "0"]),
    (lambda: MixtureOfExperts(16, 32, 4, 2)(torch.randn(2, 5, 12)), ["d_model=16", "(2, 5, 12)"]),
])
def test_bad_layer_configurations_and_inputs_name_the_argument(call, words):
    assert_error_names(call, words)


def test_the_dropped_fraction_needs_a_call_first():
    layer = MixtureOfExperts(16, 32, 4, 2)
    assert_error_names(lambda: layer.dropped_fraction, ["no call"], RuntimeError)
    layer(torch.randn(3, 16))
    assert layer.dropped_fraction == 0.0


# ------------------------------------------------------------------ against Hugging Face's
@pytest.mark.parametrize("top_k", [2, 3])
def test_equal_to_mixtrals_block_outputs_and_router_logits(top_k):
    ours = MixtureOfExperts(16, 24, num_experts=8, top_k=top_k)
    theirs = hugging_face_twin(ours)
    assert type(theirs).__name__ == "MixtralSparseMoeBlock"
    x = torch.randn(3, 7, 16)
    output, logits = run_with_router_logits(theirs, x)
    assert_close(ours(x), output)
    assert_close(ours.last_routing.logits, logits)


@pytest.mark.parametrize("renormalize", [False, True])
def test_with_a_shared_expert_equal_to_qwen2_moes_block(renormalize):
    ours = MixtureOfExperts(16, 12, 4, 2, renormalize=renormalize, shared_expert_d_ff=40)
    theirs = hugging_face_twin(ours)
    assert type(theirs).__name__ == "Qwen2MoeSparseMoeBlock"
    x = torch.randn(2, 5, 16)
    output, logits = run_with_router_logits(theirs, x)
    assert_close(ours(x), output)
    assert_close(ours.last_routing.logits, logits)


def test_the_mapping_also_fits_transformers_4s_list_of_experts():
    """transformers 4 kept a ModuleList of experts with w1, w2, w3: the same weights load into
    a block of that layout and give the same expert outputs."""
    ours = MixtureOfExperts(16, 12, 3, 2)

    class Expert(nn.Module):
        def __init__(self):
            super().__init__()
            self.w1, self.w3 = nn.Linear(16, 12, bias=False), nn.Linear(16, 12, bias=False)
            self.w2 = nn.Linear(12, 16, bias=False)

    class Version4Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate = nn.Linear(16, 3, bias=False)
            self.experts = nn.ModuleList(Expert() for _ in range(3))

    theirs = Version4Block()
    theirs.load_state_dict(hugging_face_state_dict(ours, theirs), strict=True)
    x = torch.randn(4, 16)
    for mine, old in zip(ours.experts, theirs.experts, strict=True):
        assert_close(mine(x), old.w2(torch.nn.functional.silu(old.w1(x)) * old.w3(x)))


def test_hugging_face_twin_refuses_what_mixtral_cannot_express():
    assert_error_names(lambda: hugging_face_twin(MixtureOfExperts(16, 12, 4, 2, expert="gelu")),
                       ["SwiGLU", "swiglu"])
    assert_error_names(lambda: hugging_face_twin(MixtureOfExperts(16, 12, 4, 2,
                                                                  renormalize=False)),
                       ["renormalize=True"])


# ----------------------------------------------------------------------- the auxiliary losses
@pytest.mark.parametrize("top_k", [1, 2, 4])
def test_load_balancing_loss_equals_transformers(top_k):
    logits = torch.randn(64, 8)
    assert_close(load_balancing_loss(logits, top_k), load_balancing_loss_func((logits,), 8, top_k))
    layers = (logits, torch.randn(32, 8))
    assert_close(load_balancing_loss(torch.cat(layers), top_k),
                 load_balancing_loss_func(layers, 8, top_k))


def test_load_balancing_loss_is_k_for_a_uniform_router_and_grows_with_concentration():
    assert_close(load_balancing_loss(torch.zeros(16, 8), 2), torch.tensor(2.0))
    bias = torch.tensor([1.0] + [0.0] * 7)
    losses = [load_balancing_loss(torch.randn(256, 8) * 0.1 + s * bias, 2).item()
              for s in (0, 2, 8)]
    assert losses[0] < losses[1] < losses[2] <= 8 * 2


def test_z_loss_is_the_mean_squared_log_sum_exp():
    logits = torch.randn(10, 6) * 5
    assert_close(router_z_loss(logits), (logits.exp().sum(-1).log() ** 2).mean())


def test_bad_router_logits_name_the_argument():
    assert_error_names(lambda: load_balancing_loss(torch.randn(8), 1), ["router_logits"])
    assert_error_names(lambda: load_balancing_loss(torch.randn(8, 4), 5), ["top_k", "4", "5"])
    assert_error_names(lambda: router_z_loss(torch.randn(2, 3, 4)), ["router_logits"])


# ---------------------------------------------------------------------------- the MoE ViT
def test_moe_vit_without_moe_blocks_is_day_6s_vit():
    torch.manual_seed(0)
    dense = ViT(**CONFIG)
    torch.manual_seed(0)
    untouched = moe_vit(CONFIG, moe_blocks=[])
    for a, b in zip(dense.state_dict().values(), untouched.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert moe_layers(untouched) == []


def test_moe_vit_with_one_expert_is_the_dense_model():
    dense = ViT(**CONFIG).eval()
    single = moe_vit(CONFIG, num_experts=1, top_k=1, d_expert=64).eval()
    for block, dense_block in zip(single.encoder.blocks, dense.encoder.blocks, strict=True):
        block.mlp.experts[0].load_state_dict(dense_block.mlp.state_dict())
    single.load_state_dict({k: v for k, v in dense.state_dict().items() if ".mlp." not in k},
                           strict=False)
    images = torch.randn(4, 1, 8, 8)
    assert_close(single(images), dense(images))


def test_moe_vit_places_the_moe_where_asked_and_refuses_other_blocks():
    model = moe_vit(CONFIG, moe_blocks=[1])
    assert [isinstance(b.mlp, MixtureOfExperts) for b in model.encoder.blocks] == [False, True]
    assert_error_names(lambda: moe_vit(CONFIG, moe_blocks=[2]), ["moe_blocks", "2", "0 to 1"])


def test_parameter_counts_leave_out_the_experts_a_token_skips():
    model = moe_vit(CONFIG, num_experts=8, top_k=2, d_expert=32)
    total, active = parameter_counts(model)
    per_expert = 2 * 32 * 32 + 32 + 32
    assert total == sum(p.numel() for p in model.parameters())
    assert total - active == 2 * (8 - 2) * per_expert
    assert parameter_counts(ViT(**CONFIG))[0] == parameter_counts(ViT(**CONFIG))[1]


# ----------------------------------------------------------------------------------- cost
@pytest.mark.parametrize("dispatch, runs", [("sorted", 2), ("naive", 8)])
def test_flops_per_token_are_the_formula(dispatch, runs):
    d, d_e, n, k, tokens = 32, 64, 8, 2, 128
    layer = MixtureOfExperts(d, d_e, n, k, expert="gelu", dispatch=dispatch)
    assert counted_flops(layer, torch.randn(tokens, d)) == tokens * (2 * d * n + runs * 4 * d * d_e)
    swiglu = MixtureOfExperts(d, d_e, n, k)
    assert counted_flops(swiglu, torch.randn(tokens, d)) == tokens * (2 * d * n + k * 6 * d * d_e)


# ----------------------------------------------------------------------------- statistics
def test_share_entropy_and_mutual_information():
    assert math.isclose(share_entropy(torch.full((8,), 1 / 8)), 1.0, rel_tol=1e-6)
    assert share_entropy(torch.tensor([1.0, 0, 0, 0])) == 0.0
    assert_error_names(lambda: share_entropy(torch.ones(1)), ["share", "(1,)"])
    a = torch.arange(8).repeat(10)
    assert math.isclose(mutual_information(a, a, 8, 8), math.log(8), rel_tol=1e-5)
    assert abs(mutual_information(a, torch.arange(80) // 8 % 10, 8, 10)) < 0.1
    assert_error_names(lambda: mutual_information(a, a[:5], 8, 8), ["first", "second", "(80,)"])


def test_expert_share_counts_the_kept_assignments():
    layer = MixtureOfExperts(16, 8, 4, 2, capacity_factor=0.5)
    layer(torch.randn(64, 16))
    share = expert_share(layer)
    assert_close(share.sum(), torch.tensor(1.0))
    kept_per_expert = torch.bincount(layer.last_routing.experts[layer.last_kept], minlength=4)
    assert_close(share, kept_per_expert / kept_per_expert.sum())


def test_a_short_training_run_repeats_and_records_the_shares():
    def build():
        return moe_vit(CONFIG, num_experts=4, top_k=2, d_expert=16)

    first = train_moe_digits(build, epochs=1, seed=3)
    second = train_moe_digits(build, epochs=1, seed=3)
    assert first.test_accuracy == second.test_accuracy and 0 <= first.test_accuracy <= 1
    assert len(first.shares) == 1 and first.shares[0].shape == (2, 4)
    assert_close(first.shares[0].sum(-1), torch.ones(2))
    assert_error_names(lambda: train_moe_digits(build, epochs=0), ["epochs", "0"])
    assert_error_names(lambda: train_moe_digits(build, balance_weight=-1.0),
                       ["balance_weight", "-1.0"])


# ------------------------------------------------------------- bad inputs found in review
@pytest.mark.parametrize("call, words, error", [
    (lambda: expert_capacity(10, 8, 2, -1.0), ["capacity_factor", "-1.0"], ValueError),
    (lambda: expert_capacity(True, 8, 2, 1.0), ["tokens", "bool"], TypeError),
    (lambda: expert_capacity(10, 8, 9, 1.0), ["top_k", "num_experts=8"], ValueError),
    (lambda: expert_capacity(10, 0, 1, 1.0), ["num_experts", "0"], ValueError),
    (lambda: share_entropy(torch.tensor([10.0, 10, 10, 10])), ["share", "sum to 1"], ValueError),
    (lambda: share_entropy(torch.tensor([1.5, -0.5])), ["share", "non-negative"], ValueError),
    (lambda: share_entropy(torch.tensor([1, 1])), ["share"], TypeError),
    (lambda: mutual_information(torch.tensor([-1, 0]), torch.tensor([0, 1]), 2, 2),
     ["first", "0 to", "-1"], ValueError),
    (lambda: mutual_information(torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), 2, 2),
     ["first", "integers"], TypeError),
    (lambda: load_balancing_loss(torch.zeros(0, 4), 1), ["router_logits", "at least one"],
     ValueError),
    (lambda: router_z_loss(torch.zeros(0, 4)), ["router_logits", "at least one"], ValueError),
    (lambda: moe_vit(CONFIG, top_k=0), ["top_k", "0"], ValueError),
    (lambda: moe_vit(CONFIG, moe_blocks=1), ["moe_blocks", "list"], TypeError),
    (lambda: moe_vit(CONFIG, moe_blocks=[True]), ["moe_blocks", "bool"], TypeError),
    (lambda: moe_vit({"d_model": 32}), ["config", "d_mlp"], ValueError),
    (lambda: train_moe_digits(ViT(**CONFIG)), ["build", "function"], TypeError),
    (lambda: hugging_face_twin(nn.Linear(2, 2)), ["moe", "MixtureOfExperts"], TypeError),
    (lambda: hugging_face_twin(MixtureOfExperts(16, 8, 4, 2, capacity_factor=1.0)),
     ["capacity_factor=None"], ValueError),
    (lambda: Router(16, 4)(torch.randn(3, 16, dtype=torch.float64)),
     ["x", "torch.float32", "torch.float64"], TypeError),
])
def test_bad_inputs_found_in_review_name_the_argument(call, words, error):
    assert_error_names(call, words, error)


def test_sorted_dispatch_refuses_a_routing_of_other_tokens_or_other_experts():
    router, experts = Router(16, 4, 2), nn.ModuleList(SwiGLUExpert(16, 8) for _ in range(4))
    routing = router(torch.randn(3, 16))
    assert_error_names(lambda: sorted_dispatch(torch.randn(6, 16), experts, routing),
                       ["x", "3 tokens", "6"])
    assert_error_names(lambda: sorted_dispatch(torch.randn(3, 16), experts[:2], routing),
                       ["expert", "2 experts"])
    assert_error_names(lambda: sorted_dispatch(torch.randn(3, 16), experts, routing, -2),
                       ["capacity", "-2"])


def test_the_capacity_factor_is_checked_when_it_changes():
    layer = MixtureOfExperts(16, 8, 4, 2)
    assert_error_names(lambda: setattr(layer, "capacity_factor", -1.0),
                       ["capacity_factor", "-1.0"])
    naive = MixtureOfExperts(16, 8, 4, 2, dispatch="naive")
    assert_error_names(lambda: setattr(naive, "capacity_factor", 1.0), ["sorted"])
    layer.capacity_factor = 0.5
    layer(torch.randn(32, 16))
    assert layer.dropped_fraction > 0


def test_no_tokens_give_empty_outputs_and_no_nan():
    layer = MixtureOfExperts(16, 8, 4, 2)
    assert layer(torch.randn(0, 16)).shape == (0, 16)
    assert layer.dropped_fraction == 0.0
    assert_error_names(lambda: expert_share(MixtureOfExperts(16, 8, 4, 2)), ["no call"],
                       RuntimeError)


def test_float64_layers_route_in_float64_and_pass_gradcheck():
    layer = MixtureOfExperts(4, 3, 3, 2).double()
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    assert layer.router(x).probabilities.dtype == torch.float64
    assert torch.autograd.gradcheck(layer, (x,))


# ------------------------------------------------------------------------ silent wrong results
def test_capacity_is_the_ceiling_of_the_factor_as_written():
    """1.1 * 100 is 110.00000000000001 in floats; the capacity is ceil(1.1 * 100 / 5) = 22."""
    assert expert_capacity(100, 5, 1, 1.1) == 22
    assert expert_capacity(8, 4, 2, 1.25) == 5 and expert_capacity(10, 4, 2, 1.0) == 5
    assert expert_capacity(3, 2, 1, 1.0) == 2  # a true fraction still rounds up


def test_a_huge_capacity_factor_keeps_everything_and_runs():
    """No expert can take more than every token: the capacity stops there."""
    assert expert_capacity(10, 2, 1, 1e308) == 10 and expert_capacity(10, 8, 2, 4.0) == 10
    layer = MixtureOfExperts(8, 16, 4, 2, capacity_factor=1e308)
    layer(torch.randn(6, 8))
    assert layer.dropped_fraction == 0.0


def test_a_trained_layer_copies_pickles_and_averages():
    """The statistics keep no graph, and copies leave out the graph-held router logits."""
    model = moe_vit(CONFIG, num_experts=4, top_k=2, d_expert=16)
    optimizer = torch.optim.AdamW(model.parameters())
    images, labels = torch.randn(3, 1, 8, 8), torch.tensor([0, 1, 2])
    loss = nn.functional.cross_entropy(model(images), labels) + auxiliary_loss(model)
    loss.backward()
    optimizer.step()
    for layer in moe_layers(model):
        assert layer.last_routing.logits.grad_fn is None
        assert layer.router_logits().grad_fn is not None  # the auxiliary losses' input
    twin = copy.deepcopy(model)
    torch.save(model, io.BytesIO())
    averaged = torch.optim.swa_utils.AveragedModel(model)
    averaged.update_parameters(model)
    assert_close(twin(images), model(images))
    for layer in moe_layers(twin):
        assert layer.router_logits().grad_fn is not None  # filled again by the call above
    copied = copy.deepcopy(moe_layers(model)[0])
    assert_error_names(copied.router_logits, ["copies leave them out"], RuntimeError)


def test_top_1_keeps_the_probability_so_the_task_trains_the_router():
    router = Router(16, 4, top_k=1)
    assert not router.renormalize and Router(16, 4, top_k=2).renormalize
    layer = MixtureOfExperts(16, 8, 4, top_k=1)
    layer(torch.randn(10, 16)).square().sum().backward()
    assert layer.router.gate.weight.grad.abs().sum() > 0
    assert_error_names(lambda: Router(16, 4, top_k=1, renormalize=True),
                       ["renormalize=True", "top_k=1", "no gradient", "Switch"])
    assert Router(16, 1, top_k=1, renormalize=True).renormalize  # one expert: weight 1 anyway
    assert_error_names(lambda: hugging_face_twin(MixtureOfExperts(16, 8, 4, top_k=1)),
                       ["top-1", "top_k=1"])


def test_the_dispatch_is_checked_whenever_it_is_set():
    layer = MixtureOfExperts(8, 16, 4, 2)
    layer.dispatch = "naive"
    assert_error_names(lambda: setattr(layer, "dispatch", "Sorted"), ["dispatch", "'Sorted'"])
    layer.dispatch = "sorted"
    layer.capacity_factor = 1.0
    assert_error_names(lambda: setattr(layer, "dispatch", "naive"),
                       ["dispatch='naive'", "capacity"])
    assert layer.dispatch == "sorted"


@pytest.mark.parametrize("weights, words, error", [
    ((-1.0, 0.001), ["balance_weight", "-1.0"], ValueError),
    ((0.01, float("nan")), ["z_weight", "nan"], ValueError),
    ((float("inf"), 0.001), ["balance_weight", "inf"], ValueError),
    ((True, 0.001), ["balance_weight", "bool"], TypeError),
])
def test_auxiliary_loss_weights_are_finite_non_negative_numbers(weights, words, error):
    model = moe_vit(CONFIG, num_experts=4)
    model(torch.randn(2, 1, 8, 8))
    assert_error_names(lambda: auxiliary_loss(model, *weights), words, error)


def test_mutual_information_of_small_integer_types_is_not_a_mask():
    """uint8 indices would select as a boolean mask: the samples are read as integers."""
    for dtype in (torch.uint8, torch.int8, torch.int32, torch.int64):
        same = torch.tensor([0, 1], dtype=dtype)
        assert abs(mutual_information(same, same, 2, 2) - math.log(2)) < 1e-6


@pytest.mark.parametrize("build, name", [
    (lambda: Router(4, 10**9), "num_experts"),
    (lambda: MixtureOfExperts(4, 8, num_experts=10**9), "num_experts"),
    (lambda: make_expert("swiglu", 4, 10**9), "d_ff"),
    (lambda: mutual_information(torch.tensor([0]), torch.tensor([0]), 10**6, 10**6),
     "first_values * second_values"),
])
def test_sizes_beyond_the_memory_are_refused_before_allocating(build, name, monkeypatch):
    """One rule, checks.affordable: an estimate of the bytes against the machine's memory
    (here pretended to be 1 GiB, so that the test means the same on every machine)."""
    monkeypatch.setattr(checks, "memory_limit_bytes", lambda: 2**30)
    assert_error_names(build, [name, "GiB", "more than this machine's 1.0 GiB"])


@pytest.mark.parametrize("call, words, error", [
    (lambda: moe_vit(CONFIG, d_expert=0), ["d_expert", "0"], ValueError),
    (lambda: moe_vit(CONFIG, top_k=64), ["top_k", "num_experts=8", "64"], ValueError),
    (lambda: moe_vit({**CONFIG, "d_mlp": 1}), ["d_expert", "d_mlp // top_k", "1 // 2"],
     ValueError),
    (lambda: MixtureOfExperts(8, 16, 4, 2, shared_expert_d_ff=0), ["shared_expert_d_ff", "0"],
     ValueError),
    (lambda: auxiliary_loss(None), ["model", "Module", "NoneType"], TypeError),
    (lambda: parameter_counts(None), ["model", "Module", "NoneType"], TypeError),
    (lambda: expert_share(nn.Linear(2, 2)), ["layer", "MixtureOfExperts", "Linear"], TypeError),
    (lambda: train_moe_digits(lambda: None, epochs=1), ["build", "return a model", "NoneType"],
     TypeError),
    (lambda: SwiGLUExpert(8, 16)(torch.randn(3, 5)), ["x", "d_model=8", "(3, 5)"], ValueError),
    (lambda: SwiGLUExpert(8, 16)(torch.randn(3, 8, dtype=torch.float64)),
     ["x", "torch.float32", "expert"], TypeError),
    (lambda: naive_dispatch(torch.randn(3, 8), [SwiGLUExpert(8, 16)],
                            Router(8, 1, 1)(torch.randn(3, 8))), ["experts", "ModuleList", "list"],
     TypeError),
    (lambda: naive_dispatch(torch.randn(3, 8), nn.ModuleList([SwiGLUExpert(8, 16)]), "routing"),
     ["routing", "Routing", "str"], TypeError),
    (lambda: sorted_dispatch(torch.randn(4, 8), nn.ModuleList([SwiGLUExpert(8, 16)]),
                             Router(8, 1, 1)(torch.randn(3, 8))), ["x", "3 tokens", "4"],
     ValueError),
    (lambda: naive_dispatch(torch.randn(3, 8), nn.ModuleList([SwiGLUExpert(8, 16)]),
                            Routing(torch.zeros(3, 4), torch.zeros(3, 4), torch.ones(3, 1),
                                    torch.tensor([[3], [0], [1]]))),
     ["routing chose experts 0 to 3", "1 experts"], ValueError),
])
def test_misuse_found_in_review_names_the_argument(call, words, error):
    assert_error_names(call, words, error)


def test_an_expert_of_another_dtype_is_named_not_a_matrix_product_error():
    layer = MixtureOfExperts(8, 16, 4, 2)
    layer.experts[2].double()
    assert_error_names(lambda: layer(torch.randn(5, 8)), ["expert 2", "torch.float64"], TypeError)


def test_the_routers_settings_are_fixed_at_construction():
    """top_k and renormalize decide the gate's use and the checks: changing them afterwards
    would skip both (a top_k of 0 gave an output of zeros without a word)."""
    router = Router(16, 4, 2)
    for name, value in (("top_k", 0), ("top_k", 5), ("renormalize", "no"), ("num_experts", 2)):
        with pytest.raises(AttributeError, match=name):
            setattr(router, name, value)
    assert (router.top_k, router.renormalize) == (2, True)


@pytest.mark.parametrize("experts, weights, words, error", [
    (torch.tensor([[-1], [0]]), torch.ones(2, 1), ["experts -1 to 0", "3 experts"], ValueError),
    (torch.tensor([[3], [0]]), torch.ones(2, 1), ["experts 0 to 3", "3 experts"], ValueError),
    (torch.tensor([[1.0], [0.0]]), torch.ones(2, 1), ["routing.experts", "int64"], TypeError),
    (torch.tensor([[1, 2], [0, 1]]), torch.ones(2, 1), ["routing.weights", "(2, 2)"], ValueError),
    (torch.tensor([[1], [0]]), torch.ones(2, 1, dtype=torch.float64),
     ["routing.weights", "torch.float32"], ValueError),
])
@pytest.mark.parametrize("dispatch", [naive_dispatch, sorted_dispatch, gathered_dispatch])
def test_a_hand_made_routing_is_checked_by_every_dispatch(dispatch, experts, weights, words,
                                                          error):
    """Index -1 used to select the last expert in the gathered dispatch without a word."""
    routing = Routing(torch.zeros(2, 3), torch.zeros(2, 3), weights, experts)
    layer_experts = nn.ModuleList(SwiGLUExpert(8, 16) for _ in range(3))
    assert_error_names(lambda: dispatch(torch.randn(2, 8), layer_experts, routing), words, error)


def test_overflowing_logits_are_named_not_nan():
    router = Router(16, 4)
    huge = 3e38 * router.gate.weight[:1].sign().detach()
    assert_error_names(lambda: router(huge), ["logits overflow"])
    assert_error_names(lambda: router_z_loss(torch.full((2, 4), 1e20)), ["z-loss overflows"])


def test_a_converted_shared_expert_and_a_meta_sorted_dispatch_are_named(monkeypatch):
    layer = MixtureOfExperts(8, 16, 4, 2, shared_expert_d_ff=8)
    layer.shared_expert_gate.double()
    assert_error_names(lambda: layer(torch.randn(3, 8)), ["shared expert's gate", "float64"],
                       TypeError)
    meta = MixtureOfExperts(8, 16, 4, 2).to("meta")
    assert_error_names(lambda: meta(torch.randn(3, 8, device="meta")), ["meta", "gathered"])
    monkeypatch.setattr(checks, "memory_limit_bytes", lambda: 2**30)
    assert_error_names(lambda: SwiGLUExpert(8, 10**9), ["d_ff", "GiB"])
    assert_error_names(lambda: train_moe_digits(lambda: moe_vit(CONFIG), seed=2**64),
                       ["seed", "2**32"])


def test_experts_that_share_one_module_have_no_active_count():
    layer = MixtureOfExperts(16, 32, 4, 2)
    layer.experts = nn.ModuleList([layer.experts[0]] * 4)
    assert_error_names(lambda: parameter_counts(layer), ["share parameters"])
    meta = torch.zeros(3, dtype=torch.long, device="meta")
    assert_error_names(lambda: mutual_information(meta, meta, 2, 2), ["first", "meta"])


def test_the_second_fresh_misuse_is_named():
    """A helper's second round: mixed experts in the gathered dispatch used the first one's
    activation for all; a token choosing one expert twice made the dispatches disagree; fewer
    experts than top_k made the active count exceed the total; noise overflowed unchecked."""
    layer = MixtureOfExperts(16, 32, 4, 2, expert="gelu", dispatch="gathered")
    layer.experts[1] = make_expert("relu", 16, 32)
    assert_error_names(lambda: layer(torch.randn(3, 16)), ["one activation", "2 different"])
    layer.experts[1] = make_expert("gelu", 16, 8)
    assert_error_names(lambda: layer(torch.randn(3, 16)), ["one shape"])
    twice = Routing(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 2),
                    torch.tensor([[0, 0], [1, 2]]))
    experts = nn.ModuleList(SwiGLUExpert(8, 16) for _ in range(3))
    for dispatch in (naive_dispatch, sorted_dispatch, gathered_dispatch):
        assert_error_names(lambda d=dispatch: d(torch.randn(2, 8), experts, twice),
                           ["same expert twice"])
    truncated = MixtureOfExperts(16, 32, 4, 2)
    truncated.experts = truncated.experts[:1]
    assert_error_names(lambda: parameter_counts(truncated), ["1 experts", "top_k=2"])
    noisy = Router(16, 4, noisy=True).train()
    with torch.no_grad():
        noisy.noise.weight.fill_(1e38)
    assert_error_names(lambda: noisy(torch.ones(3, 16)), ["logits overflow"])
    assert_error_names(lambda: mutual_information(torch.tensor([0]), torch.tensor([0]),
                                                  np.int64(2**33), np.int64(2**31)),
                       ["first_values * second_values", "GiB"])


def test_the_third_round_of_misuse_is_named():
    unequal = MixtureOfExperts(16, 32, 4, 2)
    unequal.experts[1] = SwiGLUExpert(16, 8)
    assert_error_names(lambda: hugging_face_twin(unequal), ["one size"])
    meta = MixtureOfExperts(8, 16, 4, 2, dispatch="gathered").to("meta")
    meta(torch.zeros(3, 8, device="meta"))
    assert_error_names(lambda: expert_share(meta), ["meta"])
    assert_error_names(lambda: share_entropy(torch.ones(4, device="meta") / 4), ["share", "meta"])
    assert_error_names(lambda: train_moe_digits(lambda: nn.Linear(64, 10), epochs=1),
                       ["build", "(batch, 10) logits"])


def test_a_routing_on_another_device_is_named():
    """A third round: meta indices with CPU tokens gave garbage (the value check skips meta)."""
    experts = nn.ModuleList(SwiGLUExpert(8, 16) for _ in range(3))
    routing = Routing(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 1),
                      torch.tensor([[0], [1]], device="meta"))
    for dispatch in (naive_dispatch, sorted_dispatch, gathered_dispatch):
        assert_error_names(lambda d=dispatch: d(torch.randn(2, 8), experts, routing),
                           ["routing.experts", "x's device"])


@pytest.mark.parametrize("build, names", [
    (lambda: MixtureOfExperts(8, 2**26, num_experts=4), ["d_ff=67108864", "num_experts=4"]),
    (lambda: MixtureOfExperts(8, 32, 4, shared_expert_d_ff=2**27), ["shared_expert_d_ff"]),
    (lambda: moe_vit(CONFIG, d_expert=2**24), ["d_expert=16777216", "num_experts=8"]),
    (lambda: naive_dispatch(*_routed(2048, 1024, 16)), ["x's tokens=2048", "experts=1024"]),
    (lambda: gathered_dispatch(*_routed(2048, 4, 512)), ["x's tokens=2048", "top_k=2"]),
])
def test_every_size_that_makes_an_allocation_huge_is_named(build, names, monkeypatch):
    """Constructions name all the sizes that multiply; the naive dispatch's (tokens, experts,
    d) outputs and the gathered one's weight copy per assignment are estimated first."""
    monkeypatch.setattr(checks, "memory_limit_bytes", lambda: 2**30)
    assert_error_names(build, [*names, "GiB", "more than this machine's 1.0 GiB"])


def _routed(tokens, num_experts, d_ff, d_model=64):
    x = torch.randn(tokens, d_model)
    experts = nn.ModuleList(SwiGLUExpert(d_model, d_ff) for _ in range(num_experts))
    return x, experts, Router(d_model, num_experts, 2)(x)


def test_nan_tokens_and_empty_logits_are_named_as_such():
    """A NaN token was reported as an overflow; logits with no expert as 'too large'."""
    x = torch.randn(3, 16)
    x[1] = float("nan")
    assert_error_names(lambda: Router(16, 4)(x), ["NaN"])
    assert_error_names(lambda: router_z_loss(torch.zeros(3, 0)), ["router_logits", "(3, 0)"])


def test_a_twin_of_a_layer_on_the_meta_device_is_refused():
    layer = MixtureOfExperts(8, 16, 4, 2).to("meta")
    assert_error_names(lambda: hugging_face_twin(layer), ["moe", "meta"])


def test_mutual_information_counts_exactly_beyond_float32s_integers():
    """float32 counts stop at 2**24: a cell of 25 million was undercounted (0.2165 for the
    exact 0.1630 nats)."""
    sample = torch.zeros(26_000_000, dtype=torch.int8)
    sample[25_000_000:] = 1
    p = 25 / 26
    exact = -(p * math.log(p) + (1 - p) * math.log(1 - p))  # I(A; A) = H(A)
    assert abs(mutual_information(sample, sample, 2, 2) - exact) < 1e-9


def test_the_balance_loss_counts_choices_without_a_one_hot_table():
    """A (tokens, k, E) int64 one-hot table made 64 MiB of logits cost 1.7 GiB."""
    from common.benchmark import peak_tensor_bytes

    logits = torch.randn(4096, 64)
    assert peak_tensor_bytes(lambda: load_balancing_loss(logits, 8)) < 3 * logits.nbytes


@pytest.mark.parametrize("dispatch", [naive_dispatch, sorted_dispatch])
def test_an_expert_that_changes_the_width_is_named(dispatch):
    experts = nn.ModuleList(nn.Linear(4, 5) for _ in range(3))
    x = torch.randn(6, 4)
    assert_error_names(lambda: dispatch(x, experts, Router(4, 3, 2)(x)),
                       ["expert 0", "d_model=4", "got (", ", 5) for ("])


def test_experts_that_overflow_float16_are_named_not_nan():
    torch.manual_seed(6)
    layer = MixtureOfExperts(16, 32, 4, 2).half()
    assert_error_names(lambda: layer(300 * torch.randn(8, 16).half()),
                       ["experts' output overflows torch.float16", "|x| up to"])


def test_round_five_cases_are_named_or_exact():
    """int8 samples compared without wrapping around; float32 factors taken as written;
    d_ff passed to moe_vit, and an auxiliary loss after a call without tokens, named."""
    assert mutual_information(torch.tensor([0, 127], dtype=torch.int8), torch.tensor([0, 1]),
                              128, 2) == pytest.approx(math.log(2))
    assert expert_capacity(100, 11, 1, np.float32(1.1)) == expert_capacity(100, 11, 1, 1.1) == 10
    assert_error_names(lambda: moe_vit(CONFIG, num_experts=2, d_ff=32), ["d_expert", "d_ff=32"],
                       TypeError)
    layer = MixtureOfExperts(4, 8, 3, 2)
    layer(torch.randn(0, 4))
    assert_error_names(lambda: auxiliary_loss(layer), ["model's last call had no tokens"])


def test_the_sorted_dispatch_estimates_its_hidden_layers(monkeypatch):
    monkeypatch.setattr(checks, "memory_limit_bytes", lambda: 2**30)
    layer = MixtureOfExperts(4, 2048, 1, 1)
    with torch.no_grad():
        assert_error_names(lambda: layer(torch.randn(65536, 4)),
                           ["x's tokens", "the experts' hidden width", "GiB"])


def test_divergence_met_inside_the_model_is_named_as_training_divergence():
    vit = dict(image_size=8, patch_size=4, in_channels=1, num_classes=10, d_model=8,
               num_layers=2, num_heads=2, d_mlp=16)
    assert_error_names(lambda: train_moe_digits(lambda: moe_vit(vit, num_experts=2, top_k=1),
                                                epochs=1, learning_rate=1e4),
                       ["training diverged", "learning_rate"], FloatingPointError)


def test_round_six_cases_are_named():
    """A NumPy d_model reached transformers' strict config as int64; a NaN logit was called
    too large by the z-loss."""
    layer = MixtureOfExperts(np.int64(4), 6, 4, 2)
    assert type(layer.d_model) is int
    assert hugging_face_twin(layer).gate.weight.shape == (4, 4)
    assert_error_names(lambda: router_z_loss(torch.tensor([[float("nan"), 0.0]])),
                       ["router_logits hold NaN"])


def test_round_seven_cases_are_named():
    """An auxiliary loss for training after a no_grad call trained nothing; dense_gates
    indexed past its experts; describe's scale overflowed to inf."""
    from common.experiments import paired_difference
    from day08_mixture_of_experts.moe import dense_gates

    layer = MixtureOfExperts(4, 8, 4, 2)
    with torch.no_grad():
        layer(torch.randn(3, 4))
        assert auxiliary_loss(layer).isfinite()  # for logging: fine
    assert_error_names(lambda: auxiliary_loss(layer), ["torch.no_grad", "no graph"])
    routing = Routing(torch.zeros(2, 4), torch.zeros(2, 4), torch.ones(2, 1),
                      torch.tensor([[3], [0]]))
    assert_error_names(lambda: dense_gates(routing, 2), ["experts 0 to 3", "num_experts=2"])
    assert_error_names(lambda: paired_difference([10, 12], [0, 0]).describe(1e308),
                       ["scale=1e+308", "overflow"])
