"""Day 9: the discretisation, the scans, the block against Hugging Face's MambaMixer, the
language model against MambaForCausalLM, the S4 view, the task and the bad inputs. The
notebook's experiment (a committed sweep over ten seeds, and one seed trained again) and
cost measurements run under nbval; the sweep's command runs here on a tiny setting."""

import json
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from common import checks
from common.testing import assert_error_names
from day09_mamba import (
    MARKER,
    MambaBlock,
    MambaLM,
    MambaState,
    RMSNorm,
    TransformerLM,
    associative_scan,
    convolution_kernel,
    copying_sweep,
    discretize,
    hugging_face_lm,
    hugging_face_mixer,
    selective_copying,
    sequential_scan,
    ssd_matrix_form,
    train_copying,
)
from day09_mamba.mamba import COPYING_MODELS, NOISE, delta_by_token, recording_selection

with warnings.catch_warnings():  # transformers' import of tqdm.auto may warn; harmless
    warnings.simplefilter("ignore")
    import transformers

transformers.logging.set_verbosity_error()


def scan_inputs(batch=2, length=23, channels=6, size=4, dtype=torch.float64):
    x = torch.randn(batch, length, channels, dtype=dtype)
    delta = F.softplus(torch.randn(batch, length, channels, dtype=dtype))
    A = -torch.rand(channels, size, dtype=dtype) * 4
    B, C = (torch.randn(batch, length, size, dtype=dtype) for _ in range(2))
    return x, delta, A, B, C, torch.randn(channels, dtype=dtype)


# ------------------------------------------------------------------------ state-space duality
@pytest.mark.parametrize("length", [1, 23])
def test_the_matrix_form_equals_the_scan_for_a_scalar_a_per_channel(length):
    """Mamba-2's duality: with one A per channel the scan is (L o C B^T)(delta x) + D x, and
    its gradients agree too."""
    x, delta, A, B, C, D = scan_inputs(length=length)
    A = A[:, :1].expand_as(A).clone()
    inputs = [t.clone().requires_grad_() for t in (x, delta, A, B, C, D)]
    twins = [t.clone().requires_grad_() for t in (x, delta, A, B, C, D)]
    ours, theirs = ssd_matrix_form(*inputs), sequential_scan(*twins)[0]
    assert_close(ours, theirs)
    upstream = torch.randn_like(ours)
    (ours * upstream).sum().backward()
    (theirs * upstream).sum().backward()
    x_delta_b_c_d = [0, 1, 3, 4, 5]
    assert_close([inputs[i].grad for i in x_delta_b_c_d], [twins[i].grad for i in x_delta_b_c_d])
    # The matrix form reads A's first column, the scan every entry: the same scalar's gradient
    assert_close(inputs[2].grad.sum(1), twins[2].grad.sum(1))


def test_the_matrix_form_refuses_a_diagonal_a_with_different_entries():
    x, delta, A, B, C, D = scan_inputs()
    with pytest.raises(ValueError, match="A must hold one value per channel"):
        ssd_matrix_form(x, delta, A, B, C, D)


# ------------------------------------------------------------------------ discretisation
@pytest.mark.parametrize("delta", [0.01, 0.3, 2.0])
def test_zero_order_hold_is_the_matrix_exponential_of_the_augmented_system(delta):
    A = -torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    B = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    augmented = torch.zeros(4, 4, dtype=torch.float64)
    augmented[:3, :3], augmented[:3, 3] = torch.diag(A), B
    exact = torch.linalg.matrix_exp(delta * augmented)
    A_bar, B_bar = discretize(torch.tensor([delta], dtype=torch.float64), A[None], B, "zoh")
    assert_close(A_bar[0], torch.diagonal(exact[:3, :3]))
    assert_close(B_bar[0], exact[:3, 3])


def test_mambas_b_bar_is_first_order():
    A, B = -torch.tensor([[1.0, 2.0]], dtype=torch.float64), torch.tensor([1.0, 1.0],
                                                                          dtype=torch.float64)
    gaps = [(discretize(torch.tensor([d], dtype=torch.float64), A, B, "zoh")[1]
             - discretize(torch.tensor([d], dtype=torch.float64), A, B)[1]).abs().max()
            for d in (0.02, 0.01)]
    assert 3.8 < gaps[0] / gaps[1] < 4.2
    assert_error_names(lambda: discretize(torch.ones(1), A.float(), B.float(), "euler"),
                       ["method", "euler"])


# ----------------------------------------------------------------------------- the scans
def test_the_associative_scan_equals_the_sequential_one_with_gradients():
    inputs = scan_inputs()

    def run(scan):
        leaves = [t.clone().requires_grad_() for t in inputs]
        y, h = scan(*leaves)
        return [y, h, *torch.autograd.grad(y.square().sum() + h.sum(), leaves)]

    for ours, theirs in zip(run(associative_scan), run(sequential_scan), strict=True):
        assert_close(ours, theirs)


@pytest.mark.parametrize("split", [1, 8, 22])
def test_a_sequence_split_in_two_calls_carries_its_state(split):
    x, delta, A, B, C, D = scan_inputs()
    full, last = sequential_scan(x, delta, A, B, C, D)
    first, middle = associative_scan(x[:, :split], delta[:, :split], A, B[:, :split],
                                     C[:, :split], D)
    second, end = sequential_scan(x[:, split:], delta[:, split:], A, B[:, split:],
                                  C[:, split:], D, middle)
    assert_close(torch.cat([first, second], 1), full)
    assert_close(end, last)


def test_an_empty_sequence_returns_the_state_it_was_given():
    x, delta, A, B, C, D = scan_inputs(length=0)
    state = torch.randn(2, 6, 4, dtype=torch.float64)
    for scan in (sequential_scan, associative_scan):
        y, h = scan(x, delta, A, B, C, D, state)
        assert y.shape == (2, 0, 6) and torch.equal(h, state)


@pytest.mark.parametrize("change, words", [
    (lambda args: {**args, "delta": args["delta"][:, :5]}, ["delta", "x's shape"]),
    (lambda args: {**args, "A": args["A"][:3]}, ["A", "channels=6"]),
    (lambda args: {**args, "B": args["B"][..., :2]}, ["B", "(2, 23, 4)"]),
    (lambda args: {**args, "D": args["D"][:2]}, ["D", "(6,)"]),
    (lambda args: {**args, "state": torch.zeros(2, 6, 5)}, ["state", "(2, 6, 4)"]),
])
def test_bad_scan_inputs_name_the_argument(change, words):
    x, delta, A, B, C, D = scan_inputs(dtype=torch.float32)
    args = change(dict(x=x, delta=delta, A=A, B=B, C=C, D=D, state=None))
    for scan in (sequential_scan, associative_scan):
        assert_error_names(lambda args=args, scan=scan: scan(**args), words)


# ----------------------------------------------------------------------------- the block
@pytest.mark.parametrize("scan", ["sequential", "associative"])
def test_the_block_equals_hugging_faces_mixer_with_gradients(scan):
    block = MambaBlock(16, d_state=4, scan=scan)
    theirs = hugging_face_mixer(block)
    ours_x = torch.randn(2, 9, 16, requires_grad=True)
    their_x = ours_x.detach().clone().requires_grad_()
    assert_close(block(ours_x), theirs(their_x))
    block(ours_x).square().sum().backward()
    theirs(their_x).square().sum().backward()
    assert_close(ours_x.grad, their_x.grad)
    their_parameters = dict(theirs.named_parameters())
    for name, parameter in block.named_parameters():
        assert_close(parameter.grad, their_parameters[name].grad)


def test_whole_sequence_two_calls_and_step_by_step_agree():
    block = MambaBlock(16, d_state=4)
    x = torch.randn(3, 10, 16)
    with torch.no_grad():
        full, final = block(x, return_state=True)
        first, middle = block(x[:, :4], return_state=True)
        second, end = block(x[:, 4:], middle, return_state=True)
        state, steps = block.initial_state(3), []
        for t in range(10):
            y, state = block.step(x[:, t], state)
            steps.append(y)
    assert_close(torch.cat([first, second], 1), full)
    assert_close(torch.stack(steps, 1), full)
    for carried in (end, state):
        assert_close(carried.ssm, final.ssm)
        assert_close(carried.conv, final.conv)


def test_the_future_changes_no_earlier_output():
    block = MambaBlock(16, d_state=4)
    x = torch.randn(2, 12, 16)
    changed = x.clone()
    changed[:, 8:] += 1
    with torch.no_grad():
        assert torch.equal(block(x)[:, :8], block(changed)[:, :8])


@pytest.mark.parametrize("call, words", [
    (lambda: MambaBlock(16, d_state=0), ["d_state", "0"]),
    (lambda: MambaBlock(16, expand=0), ["expand", "0"]),
    (lambda: MambaBlock(16, d_conv=0), ["d_conv", "0"]),
    (lambda: MambaBlock(16, scan="parallel"), ["scan", "parallel", "sequential"]),
    (lambda: MambaBlock(16)(torch.randn(9, 16)), ["x", "(9, 16)"]),
    (lambda: MambaBlock(16)(torch.randn(2, 9, 12)), ["d_model=16", "(2, 9, 12)"]),
    (lambda: MambaBlock(16).step(torch.randn(2, 9, 16), MambaBlock(16).initial_state(2)),
     ["x", "(2, 9, 16)"]),
    (lambda: MambaBlock(16)(torch.randn(2, 9, 16),
                            MambaState(torch.zeros(2, 32, 2), torch.zeros(2, 32, 16))),
     ["state.conv", "(2, 32, 3)", "(2, 32, 2)"]),
    (lambda: MambaBlock(16)(torch.randn(2, 9, 16), MambaBlock(16).initial_state(3)),
     ["state.conv", "batch 2"]),
    (lambda: convolution_kernel(MambaBlock(8), 4), ["selective=False"]),
    (lambda: hugging_face_mixer(MambaBlock(8, selective=False)), ["selective=True"]),
])
def test_bad_block_inputs_name_the_argument(call, words):
    assert_error_names(call, words)


def test_bad_bool_and_state_types_are_type_errors():
    assert_error_names(lambda: MambaBlock(16, selective="no"), ["selective"], TypeError)
    block = MambaBlock(16)
    assert_error_names(lambda: block(torch.randn(1, 2, 16), MambaState(None, None)),
                       ["state.conv", "NoneType"])


# ------------------------------------------------------------------------- the S4 view
def test_a_time_invariant_block_is_a_convolution_and_linear():
    block = MambaBlock(8, d_state=4, selective=False)
    u = torch.randn(2, 15, 16)
    with torch.no_grad():
        delta, B, C = block.selection(u)
        y, _ = sequential_scan(u, delta, -torch.exp(block.A_log), B, C, block.D)
        kernel = convolution_kernel(block, 15)
        causal = F.conv1d(F.pad(u.transpose(1, 2), (14, 0)), kernel.flip(-1).unsqueeze(1),
                          groups=16).transpose(1, 2)
    assert_close(y, causal + u * block.D)


# ----------------------------------------------------------------- the language models
def test_the_language_model_equals_hugging_faces():
    model = MambaLM(11, 16, 2, d_state=4)
    theirs = hugging_face_lm(model)
    tokens = torch.randint(0, 11, (2, 7))
    with torch.no_grad():
        output = theirs(tokens, labels=tokens)
        logits = model(tokens)
    assert_close(logits, output.logits)
    assert_close(F.cross_entropy(logits[:, :-1].reshape(-1, 11), tokens[:, 1:].reshape(-1)),
                 output.loss)
    assert model.lm_head.weight is model.embedding.weight


def test_the_transformer_lm_is_causal():
    model = TransformerLM(6, 16, 2, 4, 32).eval()
    tokens = torch.randint(0, 6, (2, 10))
    changed = tokens.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 6
    with torch.no_grad():
        assert_close(model(tokens)[:, :6], model(changed)[:, :6])
    assert_error_names(lambda: MambaLM(6, 16, 1)(torch.randn(2, 3)), ["tokens", "float"],
                       TypeError)


# ---------------------------------------------------------------------------- the task
def test_selective_copying_puts_the_data_in_order_before_the_markers():
    inputs, targets = selective_copying(50, 20, 3, 4, torch.Generator().manual_seed(1))
    assert inputs.shape == (50, 23) and targets.shape == (50, 3)
    assert (inputs[:, 20:] == MARKER).all()
    assert torch.equal(inputs[:, :20][inputs[:, :20] > MARKER].view(50, 3), targets)
    assert ((targets >= 2) & (targets < 6)).all()
    assert_error_names(lambda: selective_copying(2, 3, 4), ["memorize", "length=3"])


def test_a_short_training_run_repeats():
    def build():
        return MambaLM(6, 8, 1, d_state=4)

    first, second = (train_copying(build, steps=3, seed=2, test_sequences=16) for _ in range(2))
    assert first.token_accuracy == second.token_accuracy
    assert 0 <= first.sequence_accuracy <= first.token_accuracy <= 1
    assert_error_names(lambda: train_copying(build(), steps=3), ["build", "function"],
                       TypeError)
    assert_error_names(lambda: train_copying(build, steps=0), ["steps", "0"])


# ------------------------------------------------------------- bad inputs found in review
@pytest.mark.parametrize("call, words, error", [
    (lambda: MambaBlock(16)(torch.randn(1, 4, 16, dtype=torch.float64)),
     ["x", "torch.float32", "torch.float64"], TypeError),
    (lambda: MambaBlock(16)(torch.randn(1, 4, 16), torch.zeros(1, 32, 16)),
     ["state", "MambaState", "Tensor"], TypeError),
    (lambda: MambaBlock(16).initial_state(True), ["batch", "bool"], TypeError),
    (lambda: MambaBlock(16, dt_min=0.5, dt_max=0.1), ["dt_min", "dt_max=0.1"], ValueError),
    (lambda: MambaBlock(16, dt_min=float("nan")), ["dt_min", "nan"], ValueError),
    (lambda: MambaBlock(16)(torch.randn(1, 4, 16), return_state="no"), ["return_state"],
     TypeError),
    (lambda: MambaLM(6, 8, 1)(torch.tensor([[1, 6]])), ["tokens", "[0, 6)"], ValueError),
    (lambda: MambaLM(6, 8.0, 1), ["d_model", "8.0"], TypeError),
    (lambda: TransformerLM(6, 16, 1, 4, 32)(torch.rand(2, 3)), ["tokens", "float"], TypeError),
    (lambda: train_copying(lambda: 3, steps=2), ["build", "int"], TypeError),
    (lambda: train_copying(lambda: MambaLM(6, 8, 1), steps=2, test_sequences=0),
     ["test_sequences", "0"], ValueError),
    (lambda: hugging_face_lm(MambaBlock(8)), ["model", "MambaLM", "MambaBlock"], TypeError),
    (lambda: hugging_face_lm(MambaLM(6, 16, 1, selective=False)), ["selective=True"],
     ValueError),
    (lambda: convolution_kernel(torch.nn.Linear(2, 2), 4), ["block", "MambaBlock"], TypeError),
    (lambda: selective_copying(2, generator=0), ["generator", "int"], TypeError),
])
def test_bad_inputs_found_in_review_name_the_argument(call, words, error):
    assert_error_names(call, words, error)


def test_one_run_gives_the_learning_curve_of_shorter_runs():
    """After the warm-up the rate is constant: the model after 8 steps of a 12-step run is the
    model of an 8-step run, so the curve's point is that run's accuracy."""
    def build():
        return MambaLM(6, 8, 1, d_state=4)

    long = train_copying(build, steps=12, seed=1, test_sequences=64, evaluate_at=[8, 4],
                         warmup_steps=3)
    short = train_copying(build, steps=8, seed=1, test_sequences=64, warmup_steps=3)
    assert list(long.curve) == [4, 8, 12] and long.curve[12] == long.token_accuracy
    assert long.curve[8] == short.token_accuracy
    assert_error_names(lambda: train_copying(build, steps=5, evaluate_at=[6]),
                       ["evaluate_at", "steps=5", "6"])
    assert_error_names(lambda: train_copying(build, steps=5, evaluate_at=5),
                       ["evaluate_at", "list"], TypeError)


def test_recorded_selection_is_what_the_blocks_computed_and_then_forgotten():
    model = MambaLM(6, 8, 2, d_state=4)
    inputs, _ = selective_copying(3, length=10, memorize=2)
    with recording_selection(model) as records:
        logits = model(inputs)
    assert len(records) == 2 and all(delta.shape == (3, 12, 16) for delta, _, _ in records)
    assert_close(model(inputs), logits)  # recording changed nothing
    assert "selection" not in vars(model.layers[0].mixer)  # the method shows again
    means = delta_by_token(model, inputs)
    data, noise = inputs > MARKER, inputs == NOISE
    assert_close(means[1][0], records[1][0][data].mean(0))
    assert_close(means[1][1], records[1][0][noise].mean(0))


def test_the_sweep_command_writes_every_run_and_delta_for_mamba(tmp_path):
    output = tmp_path / "sweep.json"
    copying_sweep.main(["--seeds", "0-1", "--steps", "2", "3", "--learning-rates", "0.01",
                        "--models", "Mamba", "Transformer", "--output", str(output)])
    sweep = json.loads(output.read_text())
    assert sweep["setting"]["steps"] == [2, 3] and sweep["environment"]["device"] == "cpu"
    runs = {(run["model"], run["seed"]): run for run in sweep["runs"]}
    assert set(runs) == {(name, seed) for name in ("Mamba", "Transformer") for seed in (0, 1)}
    assert all(set(run["curve"]) == {"2", "3"} for run in runs.values())
    mamba = runs["Mamba", 0]["delta_data_over_noise"]
    assert len(mamba) == 2 and len(mamba[0]) == 32  # layers, then channels (E = 2 * 16)
    assert "delta_data_over_noise" not in runs["Transformer", 0]
    assert set(COPYING_MODELS) == {"Mamba", "time-invariant", "Transformer"}
    for bad in (["--seeds", "x"], ["--learning-rates", "2"], ["--models", "GPT"]):
        with pytest.raises(SystemExit):
            copying_sweep.main([*bad, "--output", str(tmp_path / "bad.json")])
    assert not (tmp_path / "bad.json").exists()
    (tmp_path / "afile").write_text("")
    with pytest.raises(SystemExit):  # refused before any training
        copying_sweep.main(["--steps", "1", "--output", str(tmp_path / "afile" / "x.json")])


@pytest.mark.parametrize("build, name", [
    (lambda: MambaBlock(8, d_state=10**7), "d_state"),
    (lambda: convolution_kernel(MambaBlock(8, selective=False), 10**9), "length"),
    (lambda: selective_copying(2, length=10**9), "batch x length"),
    (lambda: TransformerLM(6, 16, 1, 4, 32, max_len=10**9), "max_len"),
])
def test_sizes_beyond_the_memory_are_refused_before_allocating(build, name, monkeypatch):
    monkeypatch.setattr(checks, "memory_limit_bytes", lambda: 2**30)  # the same everywhere
    assert_error_names(build, [name, "GiB", "more than this machine's 1.0 GiB"])


def test_a_state_of_another_dtype_is_named():
    block = MambaBlock(8)
    state = block.initial_state(1)
    state.ssm = state.ssm.double()
    assert_error_names(lambda: block(torch.randn(1, 3, 8), state),
                       ["state.ssm", "torch.float32", "torch.float64"], TypeError)


def test_an_empty_sequence_changes_nothing_and_a_short_run_keeps_its_rate():
    block = MambaBlock(16)
    state = MambaState(torch.randn(2, 32, 3), torch.randn(2, 32, 16))
    output, same = block(torch.zeros(2, 0, 16), state, return_state=True)
    assert output.shape == (2, 0, 16) and same is state
    assert MambaLM(6, 8, 1)(torch.zeros(2, 0, dtype=torch.long)).shape == (2, 0, 6)
    run = train_copying(lambda: MambaLM(6, 8, 1, d_state=4), steps=10, test_sequences=8)
    assert 0 <= run.token_accuracy <= 1


def test_zero_order_hold_at_a_zero_eigenvalue_is_its_limit():
    A, B, delta = torch.tensor([[0.0, -1.0]]), torch.tensor([2.0, 3.0]), torch.tensor([0.5])
    A_bar, B_bar = discretize(delta, A, B, "zoh")
    assert_close(A_bar[0, 0], torch.tensor(1.0))
    assert_close(B_bar[0, 0], torch.tensor(1.0))  # delta B = 0.5 * 2
    assert torch.isfinite(B_bar).all()


def test_hugging_face_lm_follows_the_models_epsilon_and_tying():
    model = MambaLM(11, 16, 1, d_state=4)
    model.norm.eps = model.layers[0].norm.eps = 0.1
    tokens = torch.randint(0, 11, (1, 5))
    with torch.no_grad():
        assert_close(model(tokens), hugging_face_lm(model)(tokens).logits)
    assert_error_names(lambda: model.norm(torch.randn(2, 8)), ["x", "d_model=16", "(2, 8)"])


# ------------------------------------------------------------------------ silent wrong results
def test_rms_norm_computes_float64_in_float64():
    norm = RMSNorm(6).double()
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    exact = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + norm.eps)
    assert_close(norm(x), exact, rtol=0, atol=1e-15)
    assert torch.autograd.gradcheck(norm, (x,))


def test_discretize_refuses_a_b_of_another_state_size():
    with pytest.raises(ValueError, match="same state size N"):
        discretize(torch.rand(2, 3, 4), -torch.rand(4, 5), torch.randn(2, 3, 6))


@pytest.mark.parametrize("call, words, error", [
    (lambda: discretize([0.1], torch.ones(2, 3), torch.ones(3)), ["delta", "Tensor", "list"],
     TypeError),
    (lambda: discretize(torch.ones(4), torch.ones(2, 3), torch.ones(3)),
     ["delta", "E=2", "(4,)"], ValueError),
    (lambda: train_copying(lambda: None, steps=1), ["build", "return a model", "NoneType"],
     TypeError),
])
def test_misuse_found_in_review_names_the_argument(call, words, error):
    assert_error_names(call, words, error)


def test_a_mamba_layer_in_float64_passes_gradcheck():
    """RMSNorm computes float64 in float64, so a whole residual layer's gradients are exact."""
    from day09_mamba.mamba import MambaLayer

    torch.manual_seed(0)
    layer = MambaLayer(4, d_state=2, expand=1).double()
    x = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


def test_selective_is_fixed_and_scan_is_checked_whenever_it_is_set():
    block = MambaBlock(8)
    with pytest.raises(AttributeError, match="selective"):
        block.selective = False
    block.scan = "associative"
    assert_error_names(lambda: setattr(block, "scan", "parallel"), ["scan", "'parallel'"])
    assert block.scan == "associative"


def test_recordings_nest_and_survive_copies_and_pickling():
    import copy
    import io

    model = MambaLM(6, 8, 1, d_state=4)
    inputs = selective_copying(2, length=10, memorize=2)[0]
    with recording_selection(model) as outer:
        model(inputs)
        with recording_selection(model) as inner:
            model(inputs)
        twin = copy.deepcopy(model)
        torch.save(model, io.BytesIO())
        twin(inputs)
    model(inputs)
    assert (len(outer), len(inner)) == (2, 1)  # the copy recorded into its own list
    assert all(not block.recorders for block in model.modules()
               if isinstance(block, MambaBlock))
    assert_error_names(lambda: recording_selection(torch.nn.Linear(2, 2)).__enter__(),
                       ["model", "MambaBlock"])


@pytest.mark.parametrize("call, words, error", [
    (lambda: discretize(torch.tensor([100.0]), torch.tensor([[1.0]]), torch.tensor([1.0])),
     ["overflows", "A > 0"], ValueError),
    (lambda: discretize(torch.tensor([4.0]).half(), -torch.ones(1, 1).half(),
                        torch.tensor([30000.0]).half()), ["B_bar overflows"], ValueError),
    (lambda: MambaBlock(16, dt_min=1e-300), ["dt_min", "-inf"], ValueError),
    (lambda: RMSNorm(4)(torch.full((1, 4), 1e20)), ["overflows", "float64"], ValueError),
    (lambda: setattr(RMSNorm(4), "eps", 0), ["eps", "0"], ValueError),
    (lambda: train_copying(lambda: MambaLM(6, 8, 1, d_state=4), steps=3, learning_rate=1e6,
                           test_sequences=8), ["diverged", "learning_rate"], FloatingPointError),
    (lambda: MambaBlock(16, dt_max=1e300), ["dt_max", "1e3"], ValueError),
    (lambda: RMSNorm(4, eps=1e-300), ["eps", "float32"], ValueError),
    (lambda: delta_by_token(MambaLM(6, 8, 1, d_state=4), torch.zeros(2, 10, dtype=torch.long)),
     ["data tokens and noise tokens"], ValueError),
    (lambda: train_copying(lambda: MambaLM(6, 8, 1, d_state=4), steps=2, vocab=10),
     ["vocab=10", "12 token ids", "6"], ValueError),
    (lambda: train_copying(lambda: MambaLM(6, 8, 1), steps=1, seed=2**64), ["seed", "2**32"],
     ValueError),
    (lambda: selective_copying(2, 8, 2, vocab=2**63), ["vocab", "2**31"], ValueError),
])
def test_fresh_misuse_is_named_not_nan_or_obscure(call, words, error):
    assert_error_names(call, words, error)


def test_a_converted_layer_of_the_block_is_named():
    block = MambaBlock(8)
    block.out_proj.double()
    assert_error_names(lambda: block(torch.randn(1, 3, 8)), ["out_proj", "torch.float64"],
                       TypeError)


@pytest.mark.parametrize("build, name", [
    (lambda: MambaLM(10**9, 16, 1), "vocab_size"),
    (lambda: MambaLM(6, 16, 10**6), "num_layers"),
    (lambda: TransformerLM(10**9, 16, 1, 4, 32), "vocab_size"),
    (lambda: ssd_matrix_form(*[torch.zeros(1, 60000, 2)] * 2, -torch.ones(2, 1),
                             torch.zeros(1, 60000, 1), torch.zeros(1, 60000, 1), torch.ones(2)),
     "x's shape"),
])
def test_more_sizes_beyond_the_memory_are_refused(build, name, monkeypatch):
    monkeypatch.setattr(checks, "memory_limit_bytes", lambda: 2**30)
    assert_error_names(build, [name, "GiB"])


def test_scan_inputs_on_another_device_and_unbroadcastable_shapes_are_named():
    x, delta, A, B, C, D = scan_inputs(dtype=torch.float32)
    state = torch.zeros(2, 6, 4, device="meta")
    assert_error_names(lambda: sequential_scan(x, delta, A, B, C, D, state),
                       ["state", "x's device", "meta"])
    assert_error_names(lambda: discretize(torch.rand(2, 4), -torch.rand(4, 3), torch.rand(5, 3)),
                       ["delta", "B", "leading dimensions", "(2, 4)", "(5, 3)"])


def test_the_third_round_of_misuse_is_named(tmp_path):
    block = MambaBlock(8)
    for name in ("d_state", "d_conv", "d_model", "d_inner", "dt_rank"):
        with pytest.raises(AttributeError, match=name):
            setattr(block, name, 2)
    x, delta, A, B, C, D = scan_inputs()
    A_positive = torch.ones_like(A)
    for parallel in (associative_scan, ssd_matrix_form):
        assert_error_names(lambda p=parallel: p(x, delta, A_positive, B, C, D),
                           ["A must be <= 0", "sequential_scan"])
    model = MambaLM(6, 8, 1, d_state=4)
    meta = torch.zeros(1, 10, dtype=torch.long, device="meta")
    assert_error_names(lambda: delta_by_token(model, meta), ["inputs", "meta"])
    with pytest.raises(SystemExit):  # before any training: the file cannot be written there
        copying_sweep.main(["--steps", "1", "--output", "/proc/sweep.json"])


def test_a_third_round_repeats_and_mismatched_epsilons_are_named(tmp_path):
    model = MambaLM(6, 8, 2, d_state=4)
    model.layers[0].norm.eps = 0.1
    assert_error_names(lambda: hugging_face_lm(model), ["one RMSNorm epsilon", "0.1"])
    for repeat in (["--learning-rates", "0.01", "0.01"], ["--models", "Mamba", "Mamba"]):
        with pytest.raises(SystemExit):
            copying_sweep.main([*repeat, "--steps", "1", "--output", str(tmp_path / "r.json")])
    assert not (tmp_path / "r.json").exists()


def test_zoh_has_the_limits_value_and_gradient_where_delta_a_is_zero():
    """B_bar = delta B expm1(z) / z with z = delta A: at z = 0 its value is delta B and its
    derivative in A is delta^2 B / 2; a where() on z == 0 gave the value and a gradient of 0."""
    delta, B = torch.tensor([0.5], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)
    A = torch.zeros(1, 1, dtype=torch.float64, requires_grad=True)
    _, B_bar = discretize(delta, A, B, "zoh")
    B_bar.sum().backward()
    assert B_bar.item() == 0.5 and A.grad.item() == 0.5 ** 2 / 2
    delta, B = torch.rand(2, 3, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    for scale in (0.0, 1e-9, 1e-2, 1.0):  # across the series' switch-over, and at 0
        A = (-scale * torch.rand(3, 4, dtype=torch.float64)).requires_grad_()
        assert torch.autograd.gradcheck(lambda A: discretize(delta, A, B, "zoh")[1], (A,))
    for dtype in (torch.float32, torch.float64):  # the value against expm1 / z in float64
        z = torch.linspace(-2, 2, 4001, dtype=dtype)
        A = z.unsqueeze(-1)  # one channel per z, delta 1 and B 1: B_bar is the quotient
        _, B_bar = discretize(torch.ones(4001, dtype=dtype), A, torch.ones(1, dtype=dtype), "zoh")
        wide = z.double()
        exact = torch.where(wide == 0, 1.0, torch.expm1(wide) / wide.where(wide != 0, 1.0))
        assert_close(B_bar.squeeze(-1).double(), exact, rtol=16 * torch.finfo(dtype).eps, atol=0)


def test_the_matrix_form_sums_the_decays_term_by_term():
    """With delta near 1e6 the cumulative log-decays reach -1e6, whose float32 spacing is
    0.06: their differences lost 1.5e-2 of the result. Summed term by term, within 1e-5."""
    torch.manual_seed(0)
    x, C, B = torch.randn(1, 64, 2), torch.randn(1, 64, 4), torch.randn(1, 64, 4)
    delta = 1e6 * torch.rand(1, 64, 2)
    A = -1e-6 * torch.rand(2, 1).expand(2, 4).contiguous()
    D = torch.randn(2)
    exact, _ = sequential_scan(*(t.double() for t in (x, delta, A, B, C, D)))
    y = ssd_matrix_form(x, delta, A, B, C, D)
    assert ((y.double() - exact).norm() / exact.norm()).item() < 1e-5


def test_the_kernel_of_a_bfloat16_block_has_exact_exponents_past_256():
    """bfloat16 holds the integers only up to 256: exponents in it gave K_257 == K_256 (11 %
    error past 256). The reference: the same bfloat16 A_bar, B_bar and C, powers in float64."""
    torch.manual_seed(0)
    block = MambaBlock(4, selective=False).to(torch.bfloat16)
    kernel = convolution_kernel(block, 300)
    A_bar, B_bar = discretize(F.softplus(block.dt_bias), -torch.exp(block.A_log), block.B)
    powers = A_bar.double().unsqueeze(-1) ** torch.arange(300, dtype=torch.float64)
    reference = (block.C.double().unsqueeze(-1) * powers * B_bar.double().unsqueeze(-1)).sum(1)
    assert kernel.dtype == torch.bfloat16
    assert_close(kernel.double(), reference, rtol=2 ** -7, atol=1e-6)


@pytest.mark.parametrize("build, names", [
    (lambda: MambaBlock(8, d_conv=10**8), ["d_conv=100000000", "d_state=16"]),
    (lambda: MambaBlock(8, expand=10**7), ["expand=10000000"]),
    (lambda: MambaLM(6, 2**15, 1), ["d_model=32768", "num_layers=1"]),
    (lambda: TransformerLM(6, 2**13, 1, 4, 2**13), ["d_model=8192", "d_ff=8192"]),
    (lambda: sequential_scan(*_scan_inputs(4096, 8, 64, 64)), ["(4096, 8, 64, 64)"]),
    (lambda: MambaBlock(16, d_state=64)(torch.randn(256, 256, 16)), ["(256, 256, 32, 64)"]),
])
def test_every_size_that_makes_an_allocation_huge_is_named(build, names, monkeypatch):
    """The construction names all the sizes that multiply (the one out of scale among them);
    a scan's four (batch, L, E, N) tensors are estimated before the first is made."""
    monkeypatch.setattr(checks, "memory_limit_bytes", lambda: 2**30)
    assert_error_names(build, [*names, "GiB", "more than this machine's 1.0 GiB"])


def _scan_inputs(batch, length, channels, state):
    x = torch.randn(batch, length, channels)
    return (x, torch.rand_like(x), -torch.rand(channels, state),
            torch.randn(batch, length, state), torch.randn(batch, length, state),
            torch.ones(channels))


def test_inputs_that_overflow_the_scan_or_hold_nan_are_named():
    """A finite x of 1e20 made B_bar x overflow inside the scan (a NaN output); a NaN token
    was reported as an overflow of delta A."""
    torch.manual_seed(0)
    block = MambaBlock(4)
    assert_error_names(lambda: block(torch.full((1, 3, 4), 1e20)), ["overflows"])
    x = torch.randn(2, 3, 4)
    x[0, 1, 0] = float("nan")
    assert_error_names(lambda: block(x), ["NaN"])
    x, delta, A, B, C, D = _scan_inputs(1, 3, 2, 4)
    big = (torch.full_like(x, 3e38), torch.ones_like(delta), A, torch.full_like(B, 4.0), C, D)
    for scan in (sequential_scan, associative_scan):
        assert_error_names(lambda scan=scan: scan(*big), ["B_bar x", "overflows"])


def test_a_growing_state_that_overflows_is_named():
    """The sequential scan takes A > 0 (a growing system); its overflow was a silent inf."""
    ones = torch.ones(1, 100, 1)
    assert_error_names(lambda: sequential_scan(ones, ones, torch.ones(1, 1), ones, ones,
                                               torch.zeros(1)), ["output overflows", "A > 0"])


def test_a_block_names_x_when_its_scan_overflows():
    torch.manual_seed(23)
    assert_error_names(lambda: MambaBlock(4)(torch.randn(1, 3, 4) * 1e30),
                       ["x (|x| up to", "overflow"])


def test_the_twin_refuses_layers_of_different_sizes():
    from day09_mamba.mamba import MambaLayer

    model = MambaLM(6, 8, 2, d_state=4)
    model.layers[1] = MambaLayer(8, d_state=2)
    assert_error_names(lambda: hugging_face_lm(model), ["layer 1", "one size for every layer"])


@pytest.mark.parametrize("build, name", [
    (lambda: ssd_matrix_form(*_scan_inputs(1, 7800, 1, 1)[:5], torch.ones(1)), "x's shape"),
    (lambda: convolution_kernel(MambaBlock(1, d_state=1, selective=False), 50_000_000),
     "length"),
    (lambda: TransformerLM(6, 16, 1, 2, 16, max_len=5_000_000), "max_len"),
])
def test_estimates_cover_what_the_calls_hold_at_once(build, name, monkeypatch):
    """Each allocated more than 1 GiB under a 1 GiB limit, its estimate saying less."""
    monkeypatch.setattr(checks, "memory_limit_bytes", lambda: 2**30)
    assert_error_names(build, [name, "GiB"])


def test_the_associative_scan_names_an_overflowing_output():
    half = torch.float16
    assert_error_names(lambda: associative_scan(
        torch.full((1, 8, 2), 3000.0, dtype=half), torch.ones(1, 8, 2, dtype=half),
        -torch.ones(2, 16, dtype=half), torch.ones(1, 8, 16, dtype=half),
        torch.ones(1, 8, 16, dtype=half), torch.zeros(2, dtype=half)),
        ["output overflows torch.float16", "C h + D x"])


def test_estimates_cover_autograd_and_attention(monkeypatch):
    """The associative scan's graph keeps two tensors per doubling round; Day 1's attention
    holds (batch, heads, L, L) scores in the Transformer."""
    monkeypatch.setattr(checks, "memory_limit_bytes", lambda: 2**30)
    x = torch.randn(1, 64, 2048, requires_grad=True)
    assert_error_names(lambda: associative_scan(
        x, torch.full((1, 64, 2048), 0.1), -torch.ones(2048, 256), torch.randn(1, 64, 256),
        torch.randn(1, 64, 256), torch.ones(2048)), ["(1, 64, 2048, 256)", "GiB"])
    with torch.no_grad():
        assert_error_names(lambda: TransformerLM(6, 8, 1, 2, 16, max_len=12000)(
            torch.zeros(1, 12000, dtype=torch.long)), ["(1, 12000)", "heads=2", "GiB"])


def test_round_six_cases_are_named():
    """The matrix form's einsum does not promote dtypes; RMSNorm advised float64 to a float64
    input."""
    x, delta, A, B, C, D = (t.double() for t in _scan_inputs(1, 4, 2, 3))
    A = A[:, :1].expand(2, 3).contiguous()
    assert_error_names(lambda: ssd_matrix_form(x, delta, A, B.float(), C, D),
                       ["B", "torch.float64", "torch.float32"], TypeError)
    message = assert_error_names(lambda: RMSNorm(2).double()(
        torch.tensor([[1e200, 1e200]], dtype=torch.float64)), ["overflows torch.float64"])
    assert "scale x down" in message and "give RMSNorm float64" not in message
