"""Day 7's proofs as unit tests: standard, tiled and flash (Triton) attention against each other,
a float64 reference and PyTorch; the mask adapter on Day 1's MultiHeadAttention; the benchmark
and the GPU check, run here on the CPU. Without CUDA the kernels run in Triton's interpreter
(small shapes: it is slow; bfloat16 only on a GPU, since the interpreter's bf16 tl.dot is wrong)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from torch.nn.attention.bias import causal_lower_right
from torch.testing import assert_close

from day01_transformer import MultiHeadAttention, scaled_dot_product_attention
from day07_flash_attention import (
    as_attention_function,
    attention_mask,
    benchmark,
    causal_mask,
    flash_attention,
    kernels,
    key_block_ranges,
    proofs,
    standard_attention,
    tiled_attention,
)
from day07_flash_attention.proofs import (
    attention_and_gradients,
    max_errors,
    reference,
    saved_bytes,
)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BLOCK = kernels.INTERPRETER_BLOCK if kernels.INTERPRETED else 64


pytestmark = pytest.mark.usefixtures("one_thread")


def randn(*shape, dtype=torch.float32, device=DEVICE, requires_grad=False):
    return torch.randn(*shape, dtype=dtype, device=device, requires_grad=requires_grad)


def case_tensors(batch, heads, query_len, key_len, head_dim, dtype, masked):
    query, grad_output = (randn(batch, heads, query_len, head_dim, dtype=dtype) for _ in "ab")
    key, value = (randn(batch, heads, key_len, head_dim, dtype=dtype) for _ in "ab")
    key_mask = (torch.rand(batch, key_len, device=DEVICE) > 0.3) if masked else None
    return query, key, value, grad_output, key_mask


# ---------------------------------------------------------------- standard attention

@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_standard_equals_day1_attention(causal, masked):
    query, key, value, _, key_mask = case_tensors(2, 3, 6, 9, 16, torch.float32, masked)
    mask = attention_mask(causal, key_mask, 6, 9, query.device)
    expected, _ = scaled_dot_product_attention(query, key, value, mask)
    assert_close(standard_attention(query, key, value, causal, key_mask), expected)


@pytest.mark.parametrize("query_len", [1, 4, 9])
def test_causal_is_bottom_right_like_torch_causal_lower_right(query_len):
    query, key, value = randn(1, 2, query_len, 16), randn(1, 2, 9, 16), randn(1, 2, 9, 16)
    expected = F.scaled_dot_product_attention(query, key, value,
                                              attn_mask=causal_lower_right(query_len, 9))
    assert_close(standard_attention(query, key, value, causal=True), expected)
    if query_len == 9:
        assert_close(standard_attention(query, key, value, causal=True),
                     F.scaled_dot_product_attention(query, key, value, is_causal=True))


def test_causal_mask_aligns_the_last_query_with_the_last_key():
    for query_len, key_len in [(3, 5), (5, 5), (5, 3)]:
        mask = causal_mask(query_len, key_len)
        assert mask[-1].all()  # the last query sees every key
        for i in range(query_len):
            assert mask[i].sum() == max(0, min(key_len, i + 1 + key_len - query_len))


def test_standard_lse_and_rows_with_nothing_to_attend_to():
    query, key, value = randn(1, 1, 5, 16), randn(1, 1, 3, 16), randn(1, 1, 3, 16)
    output, lse = standard_attention(query, key, value, causal=True, return_lse=True)
    assert (output[0, 0, :2] == 0).all() and lse[0, 0, :2].isneginf().all()
    scores = query[0, 0, 2:] @ key[0, 0].T / 4
    mask = causal_mask(5, 3, query.device)[2:]
    assert_close(lse[0, 0, 2:], torch.logsumexp(scores.masked_fill(~mask, float("-inf")), -1))


# ---------------------------------------------------------------- tiled attention

TILED_CASES = [(37, 37, False, False), (37, 37, True, False), (50, 23, True, False),
               (23, 50, True, True), (41, 29, False, True), (1, 33, True, False),
               (33, 1, True, False)]


@pytest.mark.parametrize("query_len, key_len, causal, masked", TILED_CASES)
def test_tiled_equals_standard_in_float32(query_len, key_len, causal, masked):
    query, key, value, grad_output, key_mask = case_tensors(2, 3, query_len, key_len, 16,
                                                            torch.float32, masked)
    options = {"causal": causal, "key_mask": key_mask}
    expected = attention_and_gradients(standard_attention, query, key, value, grad_output,
                                       **options)
    result = attention_and_gradients(tiled_attention, query, key, value, grad_output,
                                     block_q=16, block_k=8, **options)
    assert_close(result, expected)
    assert all(t.isfinite().all() for t in [result[0], *result[2]])


@pytest.mark.parametrize("query_len, key_len, causal, masked", [(5, 7, True, True),
                                                                 (7, 4, True, False),
                                                                 (6, 6, False, True)])
def test_tiled_gradcheck_in_float64(query_len, key_len, causal, masked):
    inputs = [torch.randn(1, 2, n, 4, dtype=torch.float64, requires_grad=True)
              for n in (query_len, key_len, key_len)]
    key_mask = (torch.arange(key_len) % 3 != 1)[None] if masked else None
    assert torch.autograd.gradcheck(
        lambda q, k, v: tiled_attention(q, k, v, causal, key_mask, block_q=2, block_k=3), inputs)


def test_tiled_and_flash_save_linear_memory_standard_quadratic():
    per_position = 2 * 16 * 4 * 4 + 2 * 4  # q, k, v, O in float32 and the LSE, for 2 heads
    for length in (32, 64, 128):
        assert saved_bytes(tiled_attention, length, device=DEVICE) == length * per_position
        assert saved_bytes(flash_attention, length, device=DEVICE) == length * per_position
        assert saved_bytes(standard_attention, length, device=DEVICE) > 2 * length * length * 4


def test_key_block_ranges_split_visible_masked_and_invisible_keys():
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        query_len, key_len = (int(torch.randint(1, 40, (1,), generator=generator))
                              for _ in range(2))
        block_q, block_k = (int(torch.randint(1, 9, (1,), generator=generator)) for _ in range(2))
        causal = bool(torch.randint(0, 2, (1,), generator=generator))
        start = int(torch.randint(0, query_len, (1,), generator=generator)) // block_q * block_q
        stop = min(start + block_q, query_len)
        full_end, end = key_block_ranges(start, stop, query_len, key_len, block_k, causal, False)
        visible = causal_mask(query_len, key_len)[start:stop] if causal else torch.ones(
            stop - start, key_len, dtype=torch.bool)
        assert full_end % block_k == 0 and 0 <= full_end <= max(end, 0) <= key_len
        assert visible[:, :full_end].all()                    # no mask needed
        assert not visible[:, end:].any()                     # skipped entirely
        assert end == 0 or visible[:, end - 1].any()          # nothing visible is skipped
        assert key_block_ranges(start, stop, query_len, key_len, block_k, causal, True)[0] == 0


# ---------------------------------------------------------------- flash attention (Triton)

# Largest absolute errors: about twice the worst seen when the kernel's roundings (inputs, P, dS,
# outputs) are emulated in float32 on 20 random draws of these sizes.
TOLERANCE = {torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 6e-2}
FLASH_CASES = [  # (batch, heads, query_len, key_len, head_dim, causal, key mask, dtype)
    (2, 3, 40, 40, 32, False, False, torch.float32),
    (2, 3, 40, 40, 32, True, False, torch.float16),
    (1, 2, BLOCK + 1, BLOCK + 1, 16, True, False, torch.float32),   # one more than a block
    (1, 2, 1, 1, 64, False, False, torch.float16),                  # length 1
    (1, 2, 1, 20, 16, True, False, torch.float32),                  # one query, many keys
    (2, 2, 30, 45, 80, True, False, torch.float32),                 # head_dim not a power of 2
    (2, 2, 45, 30, 128, True, False, torch.float16),                # empty rows (Lq > Lk)
    (2, 2, 33, 50, 48, False, True, torch.float32),                 # key mask
    (1, 3, 50, 33, 24, True, True, torch.float16),                  # causal and key mask
    (1, 2, 20, 20, 8, True, False, torch.float32),                  # head_dim 8: padded to 16
]
if DEVICE == "cuda" and torch.cuda.get_device_capability() >= (8, 0):
    FLASH_CASES += [(2, 3, 40, 40, 64, c, m, torch.bfloat16) for c, m in [(False, False),
                                                                           (True, True)]]


@pytest.mark.parametrize("batch, heads, query_len, key_len, head_dim, causal, masked, dtype",
                         FLASH_CASES)
def test_flash_equals_the_float64_reference(batch, heads, query_len, key_len, head_dim, causal,
                                            masked, dtype):
    query, key, value, grad_output, key_mask = case_tensors(batch, heads, query_len, key_len,
                                                            head_dim, dtype, masked)
    options = {"causal": causal, "key_mask": key_mask}
    result = attention_and_gradients(flash_attention, query, key, value, grad_output, **options)
    expected = reference(query, key, value, grad_output, **options)
    errors = max_errors(result, expected)
    assert errors.max() < TOLERANCE[dtype], errors
    assert all(t.isfinite().all() for t in [result[0], *result[2]])
    assert result[0].dtype == dtype and result[1].dtype == torch.float32
    if dtype == torch.float32:
        assert_close((result[0], result[2]),
                     (expected[0].float(), [g.float() for g in expected[2]]))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_flash_no_worse_than_torch_sdpa(causal, dtype):
    query, key, value, grad_output, _ = case_tensors(2, 2, 35, 35, 32, dtype, False)
    expected = reference(query, key, value, grad_output, causal=causal)
    ours = attention_and_gradients(flash_attention, query, key, value, grad_output, causal=causal)
    def sdpa(*qkv, return_lse):
        return F.scaled_dot_product_attention(*qkv, is_causal=causal), None

    theirs = attention_and_gradients(sdpa, query, key, value, grad_output)
    for mine, torch_result, exact in zip([ours[0], *ours[2]], [theirs[0], *theirs[2]],
                                         [expected[0], *expected[2]], strict=True):
        torch_error = (torch_result.double() - exact).abs().max()
        assert (mine.double() - exact).abs().max() <= max(2 * torch_error, TOLERANCE[dtype])


def test_flash_large_logits_stay_finite():
    query, key, value = (randn(1, 2, 20, 32) for _ in range(3))
    output, lse = flash_attention(query * 100, key * 100, value, return_lse=True)
    assert output.isfinite().all() and lse.isfinite().all()
    expected = standard_attention(query.double() * 100, key.double() * 100, value.double())
    assert_close(output, expected.float(), atol=1e-2, rtol=0)  # scores ~1e4 carry ~1e-3 rounding


def test_flash_strides_change_nothing():
    """The same function of the values whatever the layout: bit for bit in the interpreter,
    which computes in one order; within float32 rounding on a GPU, where a strided tensor
    compiles to another load layout and a reduction (delta = dO . O) may sum in another order."""
    layout = randn(2, 19, 3, 64).transpose(1, 2)  # (batch, heads, length, d), strided
    strided = randn(2, 3, 38, 64)[:, :, ::2]
    grad_output = randn(2, 3, 64, 19).transpose(-1, -2)  # a strided upstream gradient too
    assert not layout.is_contiguous() and not grad_output.is_contiguous()
    results = [attention_and_gradients(flash_attention, *inputs, grad, causal=True)
               for inputs, grad in [((layout, strided, strided), grad_output),
                                    ((layout.contiguous(), strided.contiguous(),
                                      strided.contiguous()), grad_output.contiguous())]]
    exact = {"rtol": 0, "atol": 0} if kernels.INTERPRETED else {}
    assert_close(results[0], results[1], **exact)


def test_flash_fully_masked_rows_give_zeros_and_zero_gradients():
    query, key, value = (randn(2, 2, 20, 16, requires_grad=True) for _ in range(3))
    key_mask = torch.ones(2, 20, dtype=torch.bool, device=DEVICE)
    key_mask[1] = False  # the second sequence may attend to nothing
    output, lse = flash_attention(query, key, value, key_mask=key_mask, return_lse=True)
    (output * randn(2, 2, 20, 16)).sum().backward()
    assert (output[1] == 0).all() and lse[1].isneginf().all() and lse[0].isfinite().all()
    for tensor in (query, key, value):
        assert tensor.grad.isfinite().all() and (tensor.grad[1] == 0).all()


def test_flash_empty_causal_rows_have_zero_gradient():
    query = randn(1, 2, 30, 16, requires_grad=True)
    key, value = randn(1, 2, 10, 16), randn(1, 2, 10, 16)
    output = flash_attention(query, key, value, causal=True)
    output.sum().backward()
    assert (output[:, :, :20] == 0).all() and (query.grad[:, :, :20] == 0).all()
    assert query.grad.isfinite().all()


def error_message(call):
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    return f"{info.type.__name__}: {info.value}"


def test_flash_refuses_what_it_does_not_support():
    q = randn(1, 2, 8, 16)
    wide = randn(1, 2, 8, 160)
    message = error_message(lambda: flash_attention(wide, wide, wide))
    assert "head_dim=160" in message and "at most 128" in message
    message = error_message(lambda: flash_attention(q.double(), q.double(), q.double()))
    assert message.startswith("TypeError") and "torch.float64" in message
    message = error_message(lambda: flash_attention(q, q.half(), q))
    assert "share one dtype" in message
    message = error_message(lambda: flash_attention(q[0], q[0], q[0]))
    assert "query" in message and "(2, 8, 16)" in message
    message = error_message(lambda: flash_attention(q, randn(1, 3, 8, 16), randn(1, 3, 8, 16)))
    assert "(batch, heads)" in message
    message = error_message(lambda: flash_attention(q, q, randn(1, 2, 9, 16)))
    assert "key and value" in message and "9" in message
    message = error_message(lambda: flash_attention(q, q, q, key_mask=torch.ones(
        1, 7, dtype=torch.bool, device=DEVICE)))
    assert "key_mask" in message and "(1, 8)" in message
    message = error_message(lambda: flash_attention(q, q, q, key_mask=torch.ones(1, 8,
                                                                                 device=DEVICE)))
    assert message.startswith("TypeError") and "key_mask" in message
    message = error_message(lambda: flash_attention(q, q, q, scale=float("nan")))
    assert "scale" in message
    message = error_message(lambda: flash_attention(q, q, q, causal=1))
    assert "causal" in message
    message = error_message(lambda: flash_attention(q, q, q, scale=True))
    assert message.startswith("TypeError") and "scale" in message and "True" in message
    message = error_message(lambda: flash_attention(q[..., :0], q[..., :0], q[..., :0]))
    assert "query" in message and "head_dim >= 1" in message
    if kernels.INTERPRETED:  # the interpreter's bfloat16 tl.dot is wrong: refused, not wrong
        message = error_message(lambda: flash_attention(q.bfloat16(), q.bfloat16(),
                                                        q.bfloat16()))
        assert message.startswith("TypeError") and "bfloat16" in message
        message = error_message(lambda: kernels.check_kernel_device(torch.empty(1, device="meta")))
        assert "CPU tensors" in message


def test_offset_check_at_its_boundaries():
    """The last element of a (batch, head) must sit below 2**31, and batch x heads is at most
    65535 (the grid's second axis); meta tensors: the shapes cost no memory."""
    def strided(length, row_stride, batch_heads=1):
        return torch.empty_strided((batch_heads, 1, length, 1), (1, 1, row_stride, 1),
                                   device="meta")

    kernels._check_offsets(query=strided(2, 2 ** 31 - 1))  # last offset 2**31 - 1: fits
    assert "32-bit offsets" in error_message(lambda: kernels._check_offsets(
        query=strided(2, 2 ** 31)))
    kernels._check_offsets(key=strided(1, 1, batch_heads=65535))
    message = error_message(lambda: kernels._check_offsets(key=strided(1, 1, 65536)))
    assert "key" in message and "at most 65535" in message


def test_scale_may_be_a_numpy_number():
    q = randn(1, 1, 4, 8)
    assert_close(flash_attention(q, q, q, scale=np.float32(0.25)),
                 standard_attention(q, q, q, scale=0.25))


@pytest.mark.parametrize("attention", [tiled_attention, flash_attention])
@pytest.mark.parametrize("shape", [(0, 2, 5, 8), (1, 0, 5, 8), (1, 2, 0, 8)])
def test_empty_batches_heads_and_queries_agree_with_standard(attention, shape):
    q = randn(*shape, requires_grad=True)
    k = randn(*shape[:2], 3, shape[3], requires_grad=True)
    output = attention(q, k, k)
    assert output.shape == shape and torch.equal(output, standard_attention(q, k, k))
    output.sum().backward()
    assert q.grad.shape == shape and (k.grad == 0).all()


@pytest.mark.parametrize("attention", [tiled_attention, flash_attention])
def test_no_keys_give_zeros_like_standard(attention):
    q, k = randn(1, 2, 3, 8, requires_grad=True), randn(1, 2, 0, 8, requires_grad=True)
    output, lse = attention(q, k, k, return_lse=True)
    assert (output == 0).all() and lse.isneginf().all()
    assert torch.equal(output, standard_attention(q, k, k))
    output.sum().backward()
    assert (q.grad == 0).all()


@pytest.mark.parametrize("attention", [tiled_attention, flash_attention])
def test_double_backward_is_a_clear_error(attention):
    q = randn(1, 1, 4, 8, requires_grad=True)
    (grad,) = torch.autograd.grad(attention(q, q, q).square().sum(), q, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grad.sum().backward()


def test_tiled_refuses_bad_blocks():
    q = randn(1, 1, 4, 8)
    assert "block_q" in error_message(lambda: tiled_attention(q, q, q, block_q=0))
    assert "block_k" in error_message(lambda: tiled_attention(q, q, q, block_k=2.5))


# ---------------------------------------------------------------- applied to the models

def test_the_adapter_passes_the_structure_without_reading_mask_values():
    """as_attention_function renames key_padding_mask to key_mask and reads no mask value:
    a mask on the meta device, which has no values, goes through to the attention."""
    seen = {}

    def spy(query, key, value, causal=False, key_mask=None):
        seen.update(causal=causal, key_mask=key_mask)
        return query

    adapted = as_attention_function(spy)
    q = torch.empty(2, 1, 4, 8, device="meta")
    keeps = torch.empty(2, 4, dtype=torch.bool, device="meta")
    output, weights = adapted(q, q, q, key_padding_mask=keeps, causal=True)
    assert output is q and weights is None
    assert seen == {"causal": True, "key_mask": keeps}
    assert adapted.__name__ == "spy_for_models"
    with pytest.raises(ValueError, match="general mask"):
        adapted(q, q, q, torch.empty(4, 4, dtype=torch.bool, device="meta"))


@pytest.mark.parametrize("attention", [flash_attention, tiled_attention])
def test_multi_head_attention_with_flash_equals_standard(attention):
    torch.manual_seed(0)
    d_model, heads, batch = 32, 4, 3
    standard = MultiHeadAttention(d_model, heads).to(DEVICE)
    swapped = MultiHeadAttention(d_model, heads, attention=as_attention_function(attention))
    swapped.to(DEVICE).load_state_dict(standard.state_dict())
    x, memory = randn(batch, 6, d_model), randn(batch, 9, d_model)
    keeps_source = torch.arange(9, device=DEVICE) < torch.tensor([9, 5, 2], device=DEVICE)[:, None]
    keeps_target = torch.arange(6, device=DEVICE) < torch.tensor([6, 4, 3], device=DEVICE)[:, None]
    for query, source, masks in [(x, x, {}), (x, x, {"causal": True}),
                                 (x, memory, {"key_padding_mask": keeps_source}),
                                 (x, x, {"causal": True, "key_padding_mask": keeps_target})]:
        outputs = []
        for model in (standard, swapped):
            model.zero_grad()
            output = model(query, source, source, **masks)
            output.square().sum().backward()
            outputs.append([output.detach()] + [p.grad.clone() for p in model.parameters()])
        assert_close(outputs[1], outputs[0])
        assert swapped.last_attention_weights is None
    with pytest.raises(ValueError, match="general mask"):
        swapped(x, x, x, torch.rand(6, 6, device=DEVICE) > 0.5)


# ---------------------------------------------------------------- the benchmark

def test_attention_flops():
    assert benchmark.attention_flops(2, 3, 128, 128, 64, False, False) == 4 * 2 * 3 * 128**2 * 64
    assert benchmark.attention_flops(2, 3, 128, 128, 64, True, False) == 2 * 2 * 3 * 128**2 * 64
    assert benchmark.attention_flops(1, 1, 10, 10, 8, False, True) == 3.5 * 4 * 100 * 8


def test_benchmark_main_on_cpu_writes_results(tmp_path, capsys):
    code = benchmark.main(["--device", "cpu", "--seq-lens", "32", "64", "--head-dims", "16",
                           "--methods", "standard", "tiled", "triton", "sdpa_math",
                           "sdpa_efficient", "--causal", "both", "--output", str(tmp_path)])
    assert code == 0
    saved = json.loads((tmp_path / "results.json").read_text())
    metadata, rows = saved["metadata"], saved["rows"]
    assert metadata["device"] == "cpu" and metadata["torch"] == torch.__version__
    assert metadata["triton"] and metadata["dtype"] == "float32"
    assert metadata["seq_lens"] == [32, 64] and metadata["head_dims"] == [16]
    assert metadata["complete"] is True  # written incomplete after each row, complete at the end
    assert len(rows) == 2 * 2 * 2 * 5  # lengths x causal x modes x methods
    by_method = {}
    for row in rows:
        by_method.setdefault(row["method"], set()).add(row["status"])
    assert by_method["standard"] == by_method["tiled"] == {"ok"}
    # CPU tensors: the interpreter runs the kernels; where CUDA compiles them, they cannot run
    assert by_method["triton"] == ({"ok"} if kernels.INTERPRETED else {"unsupported"})
    assert by_method["sdpa_efficient"] == {"unsupported"}  # a CUDA-only backend
    ok = [r for r in rows if r["status"] == "ok"]
    assert all(r["ms"] > 0 and r["tflops"] > 0 and r["peak_mib"] is None for r in ok)
    assert all(0 < r["ms_min"] <= r["ms"] <= r["ms_max"] for r in ok)  # the spread
    assert metadata["threads"] == 1  # the CPU default: steadier on shared cores
    assert all(r["speedup"] == 1.0 for r in ok if r["method"] == "standard")
    assert (tmp_path / "results.csv").read_text().startswith("method,mode,causal")
    assert (tmp_path / "time.png").stat().st_size > 0
    assert not (tmp_path / "memory.png").exists()  # no peak memory on a CPU: no empty plot
    assert "x standard" in capsys.readouterr().out


def test_benchmark_records_out_of_memory(monkeypatch):
    def out_of_memory(q, k, v):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(benchmark, "attention_method", lambda name, causal, device: out_of_memory)
    rows = benchmark.run_sweep([16], [8], methods=("standard",), modes=("forward",),
                               causal=(False,), batch=1, heads=1, dtype=torch.float32,
                               device="cpu", progress=False)
    assert [r["status"] for r in rows] == ["OOM"] and rows[0]["ms"] is None
    assert "OOM" in benchmark.format_table(rows)


def test_benchmark_arguments():
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            benchmark.parse_arguments(["--device", "cuda"])
    with pytest.raises(SystemExit):  # one mode at a time
        benchmark.parse_arguments(["--device", "cpu", "--tune", "--models"])
    args = benchmark.parse_arguments(["--device", "cpu"])
    assert "triton" not in args.methods and args.dtype == "float32"
    assert not args.check and not args.seq_lens_given
    args = benchmark.parse_arguments(["--device", "cpu", "--check-only", "--seq-lens", "64"])
    assert args.check and args.seq_lens_given  # --check-only checks; --tune's length given


@pytest.mark.parametrize("arguments, words", [
    (["--seq-lens", "0"], ["--seq-lens", "positive int", "0"]),
    (["--batch", "-1"], ["--batch", "positive int", "-1"]),
    (["--threads", "-1"], ["--threads", "-1"]),
    (["--heads", "two"], ["--heads", "'two'"]),
])
def test_benchmark_refuses_bad_arguments_with_a_usage_error(arguments, words, capsys):
    with pytest.raises(SystemExit) as stopped:
        benchmark.parse_arguments(["--device", "cpu", *arguments])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert all(word in error for word in words), error


def test_benchmark_refuses_a_file_as_its_output_folder(tmp_path, capsys):
    existing = tmp_path / "results.json"
    existing.write_text("{}")
    with pytest.raises(SystemExit):
        benchmark.parse_arguments(["--device", "cpu", "--output", str(existing)])
    assert "is a file" in capsys.readouterr().err


def test_benchmark_help_shows_each_devices_sweep_and_the_files(capsys):
    with pytest.raises(SystemExit):
        benchmark.parse_arguments(["--help"])
    text = capsys.readouterr().out
    assert "cuda: seq_lens=[16384, 8192, 4096, 2048, 1024], head_dims=[128, 64]" in text
    assert "cpu: seq_lens=[128, 256, 512, 1024]" in text
    assert "results.json" in text and "results.csv" in text and "check.json" in text
    assert "tiles-<device>.json" in text and "models.json" in text and "gpu_run" in text


def test_unsupported_is_decided_before_running_and_a_real_error_is_an_error(monkeypatch):
    q = randn(1, 1, 8, 16, device="cpu")
    assert benchmark.method_supported("sdpa_math", q, True)
    assert benchmark.method_supported("sdpa_flash", q, False)  # PyTorch's CPU flash kernel
    assert not benchmark.method_supported("sdpa_efficient", q, False)  # CUDA only

    def broken(q, k, v):
        raise RuntimeError("an SDPA backend failed for a real reason")

    monkeypatch.setattr(benchmark, "attention_method", lambda name, causal, device: broken)
    rows = benchmark.run_sweep([16], [8], methods=("sdpa_math", "sdpa_efficient"),
                               modes=("forward",), causal=(False,), batch=1, heads=1,
                               dtype=torch.float32, device="cpu", progress=False)
    assert [r["status"] for r in rows] == ["error", "unsupported"]
    assert "real reason" in rows[0]["note"]


def test_gpu_check_code_runs_here_in_float16():
    """The check that `--check` runs on a GPU, on small shapes in the interpreter."""
    checks = benchmark.check_kernel(DEVICE, (torch.float16,),
                                    shapes=[(1, 2, 40, 40, 32), (1, 2, 20, 45, 16)])
    assert len(checks) == 2 * 2 * 4  # shapes x causal x (output, dq, dk, dv)
    assert all(c["ok"] for c in checks), [c for c in checks if not c["ok"]]
    assert all(0 < c["error"] < 1e-2 for c in checks)


def test_day3_transformer_with_flash_equals_standard():
    from day03_transformer_tests import (
        Transformer,
        greedy_decode,
        pad_sequences,
        padding_mask,
    )

    torch.manual_seed(0)
    sizes = dict(num_layers=2, d_model=32, num_heads=4, d_ff=64, dropout=0.0)
    standard = Transformer(12, 12, **sizes).to(DEVICE)
    flash = Transformer(12, 12, attention=as_attention_function(), **sizes).to(DEVICE)
    flash.load_state_dict(standard.state_dict())
    source = pad_sequences([torch.randint(1, 12, (n,)) for n in (7, 5, 3)]).to(DEVICE)
    target = pad_sequences([torch.randint(1, 12, (n,)) for n in (6, 4, 2)]).to(DEVICE)
    upstream = randn(3, 6, 12)
    outputs = []
    for model in (standard, flash):
        log_probabilities = model(source, target, source_key_padding_mask=padding_mask(source),
                                  target_key_padding_mask=padding_mask(target), causal=True)
        (log_probabilities * upstream).sum().backward()
        outputs.append([log_probabilities.detach()] + [p.grad for p in model.parameters()])
    assert_close(outputs[1], outputs[0])
    assert torch.equal(greedy_decode(standard, source, max_len=5, start_id=1),
                       greedy_decode(flash, source, max_len=5, start_id=1))


def test_day6_vit_with_flash_equals_standard():
    from day06_vit_head import DIGITS_VIT, ViT, load_digits_split

    torch.manual_seed(0)
    standard = ViT(**DIGITS_VIT).to(DEVICE)
    flash = ViT(attention=as_attention_function(), **DIGITS_VIT).to(DEVICE)
    flash.load_state_dict(standard.state_dict())
    _, _, images, labels = load_digits_split()
    images, labels = images[:3].to(DEVICE), labels[:3].to(DEVICE)
    outputs = []
    for model in (standard, flash):
        logits = model(images)
        F.cross_entropy(logits, labels).backward()
        outputs.append([logits.detach()] + [p.grad for p in model.parameters()])
    assert_close(outputs[1], outputs[0])


def test_interpreter_works_when_triton_was_imported_first():
    """torch.utils.flop_counter imports Triton; the kernels must still run interpreted."""
    if torch.cuda.is_available():
        pytest.skip("the interpreter is for machines without CUDA")
    script = (
        "import os, torch, torch.utils.flop_counter, sys\n"
        "assert 'triton' in sys.modules\n"
        "os.environ['TRITON_INTERPRET'] = '1'\n"
        "from day07_flash_attention import flash_attention, standard_attention\n"
        "q = torch.randn(1, 2, 20, 16)\n"
        "torch.testing.assert_close(flash_attention(q, q, q, causal=True),\n"
        "                           standard_attention(q, q, q, causal=True))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "TRITON_INTERPRET": ""}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("attention", [standard_attention, tiled_attention, flash_attention])
def test_return_lse_is_a_bool_not_a_truthy_string(attention):
    q = randn(1, 1, 4, 8)
    with pytest.raises(TypeError, match="return_lse"):
        attention(q, q, q, return_lse="no")


def test_the_adapter_refuses_a_function_of_another_interface_when_wrapping():
    for attention in (F.scaled_dot_product_attention, scaled_dot_product_attention, 3):
        with pytest.raises(TypeError, match="causal=, key_mask="):
            as_attention_function(attention)
    q = randn(1, 1, 4, 8)
    with pytest.raises(ValueError, match="general mask; got mask list"):
        as_attention_function(standard_attention)(q, q, q, [[True]])


def test_compiled_kernel_uses_tensor_cores_from_ampere_on():
    """Ahead-of-time compilation, no GPU needed: Turing's PTX multiplies tiles with FMA only,
    Ampere's with mma.sync, Hopper's with wgmma (the notebook's section 7 shows the same)."""
    counts = proofs.compiled_dot_instructions((75, 80, 90))
    assert counts[75]["mma.sync"] == counts[75]["wgmma"] == 0 and counts[75]["fma.rn.f32"] > 1000
    assert counts[80]["mma.sync"] > 0 and counts[90]["wgmma"] > 0
