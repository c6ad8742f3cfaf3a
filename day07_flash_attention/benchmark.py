"""Benchmark of attention: standard, tiled (PyTorch), flash (Triton) and PyTorch's
scaled_dot_product_attention backends; `--check` first checks the Triton kernel.

    python -m day07_flash_attention.benchmark                # the default sweep of the device
    python -m day07_flash_attention.benchmark --check        # check the kernel, then the sweep
    python -m day07_flash_attention.benchmark --check-only   # only the check
    python -m day07_flash_attention.benchmark --environment  # the device and its ceilings
    python -m day07_flash_attention.benchmark --tune         # tile tuning: tiles-<device>.json
    python -m day07_flash_attention.benchmark --models       # a training step of two models
    python -m day07_flash_attention.benchmark --help         # each device's sweep, the files

`python3 -m day07_flash_attention.gpu_run OUTDIR` runs them all, in order of value, within a
time budget, for a GPU lent for a few minutes.

Written by hand, not generated: the command line, the sweep loop and the files are
engineering that the notebook does not teach (issue 12), so they live here, and the notebook
imports them. What is compared (the methods, their support, their operation counts) is
taught in the notebook and generated into `benchmark_methods.py`; the measuring itself
(timing with its spread, peak memory, environment, files, plots) is `common.benchmark`'s.
"""
import argparse
import sys
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.nn import functional as F
from tqdm import tqdm

import day07_flash_attention
from common import benchmark as bench
from day07_flash_attention.benchmark_methods import (
    METHODS,
    MODES,
    attention_flops,
    attention_method,
    method_supported,
)
from day07_flash_attention.flash_attention import causal_mask, flash_attention

# Where the committed GPU results live: beside the package's modules.
RESULTS = Path(day07_flash_attention.__file__).resolve().parent / "results"


def make_inputs(batch, heads, seq_len, head_dim, dtype, device, backward):
    """Random query, key, value (and the upstream gradient), never zeros."""
    generator = torch.Generator(device=device).manual_seed(0)
    q, k, v, grad = (torch.randn(batch, heads, seq_len, head_dim, dtype=dtype, device=device,
                                 generator=generator) for _ in range(4))
    for tensor in (q, k, v):
        tensor.requires_grad_(backward)
    return q, k, v, grad


def measure_attention(function: Callable, inputs: tuple, backward: bool, device: str) -> dict:
    """Milliseconds (min, median, max) and, on CUDA, peak MiB above the inputs, of one call
    of the forward, or of the forward and the backward."""
    q, k, v, grad = inputs

    def run():
        output = function(q, k, v)
        if backward:
            output.backward(grad)

    def clear_grads():
        for tensor in (q, k, v):
            tensor.grad = None

    with torch.no_grad() if not backward else nullcontext():
        return bench.measure(run, device, clear_grads, [q, k, v] if backward else None)


def run_sweep(seq_lens, head_dims, methods=METHODS, modes=MODES, causal=(False, True),
              batch=4, heads=16, dtype=torch.bfloat16, device="cuda", progress: bool = True,
              checkpoint: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Measure every combination; returns one row per measurement (status "ok", "OOM",
    "unsupported" or "error", with the message in "note"). `checkpoint(rows)` is called after
    each measurement, so that a run stopped early keeps what it measured."""
    # In the order given: a run stopped early has measured the first sizes asked for.
    plan = [(n, d, c, mode, m) for d in head_dims for n in seq_lens for c in causal
            for mode in modes for m in methods]
    rows = []
    for seq_len, head_dim, is_causal, mode, method in tqdm(plan, disable=not progress,
                                                           desc="measuring", unit="case",
                                                           mininterval=2.0):
        backward = mode == "forward+backward"
        row = {"method": method, "mode": mode, "causal": is_causal, "dtype": str(dtype)[6:],
               "batch": batch, "heads": heads, "seq_len": seq_len, "head_dim": head_dim,
               "status": "ok", "ms": None, "ms_min": None, "ms_max": None, "tflops": None,
               "peak_mib": None, "note": ""}
        inputs = None
        try:
            inputs = make_inputs(batch, heads, seq_len, head_dim, dtype, device, backward)
            if not method_supported(method, inputs[0], is_causal):
                row.update(status="unsupported", note=f"{method} cannot run these inputs here")
            else:
                row.update(measure_attention(attention_method(method, is_causal, device),
                                             inputs, backward, device))
                flops = attention_flops(batch, heads, seq_len, seq_len, head_dim, is_causal,
                                        backward)
                row["tflops"] = flops / (row["ms"] * 1e-3) / 1e12
        except (RuntimeError, TypeError, ValueError) as error:
            row.update(bench.failure(error))
        finally:
            inputs = None
            bench.release_memory(device)
        rows.append(row)
        if checkpoint is not None:
            checkpoint(rows)
    add_speedups(rows)
    return rows


def add_speedups(rows: list[dict]) -> None:
    """speedup = time of standard attention / time of the method, for the same case."""
    def case(row):
        return tuple(row[k] for k in ("mode", "causal", "dtype", "batch", "heads", "seq_len",
                                      "head_dim"))
    standard = {case(r): r["ms"] for r in rows if r["method"] == "standard" and r["ms"]}
    for row in rows:
        baseline = standard.get(case(row))
        row["speedup"] = baseline / row["ms"] if baseline and row["ms"] else None


TABLE_COLUMNS = [("method", "method", ""), ("mode", "mode", ""), ("causal", "causal", ""),
                 ("seq_len", "N", "d"), ("head_dim", "d", "d"), ("ms_min", "min ms", ".3f"),
                 ("ms", "median ms", ".3f"), ("ms_max", "max ms", ".3f"),
                 ("tflops", "TFLOP/s", ".3f"), ("peak_mib", "peak MiB", ".1f"),
                 ("speedup", "x standard", ".2f")]


def format_table(rows: list[dict]) -> str:
    """The measurements as a fixed-width text table, the spread of the times included."""
    return bench.format_table(rows, TABLE_COLUMNS)


def save_results(rows: list[dict], metadata: dict, folder: Path) -> list[Path]:
    """results.json (metadata and rows), results.csv, and the plots of `save_plots`."""
    return bench.save_rows(rows, metadata, folder) + save_plots(rows, metadata, folder)


def save_plots(rows: list[dict], metadata: dict, folder: Path) -> list[Path]:
    """time.png and memory.png: one panel per (head_dim, causal, mode), one line per method;
    memory.png only where measured."""
    written = []
    name = metadata.get("device_name", metadata["device"])
    title = f"{name}, {metadata['dtype']}, batch {metadata['batch']}, {metadata['heads']} heads"

    def panel(row):
        return row["head_dim"], row["causal"], row["mode"]

    def panel_title(key):
        head_dim, causal, mode = key
        return f"d={head_dim}, {'causal' if causal else 'full'}, {mode}"

    for quantity, label, file in (("ms", "time (ms)", "time.png"),
                                  ("peak_mib", "peak memory (MiB)", "memory.png")):
        path = bench.plot_panels(rows, Path(folder) / file, quantity, label, "seq_len", panel,
                                 panel_title, title=title)
        written += [path] if path else []
    return written


def relative_error(result: torch.Tensor, reference: torch.Tensor) -> float:
    """‖result − reference‖ / ‖reference‖ in float64."""
    result, reference = result.double(), reference.double()
    return ((result - reference).norm() / reference.norm()).item()


# (batch, heads, query_len, key_len, head_dim) of the GPU check; query_len <= key_len, where
# PyTorch can express our causal alignment. Lengths that are not multiples of the tiles.
CHECK_SHAPES = [(2, 3, 1000, 1000, 64), (2, 3, 1024, 1024, 128), (1, 4, 777, 777, 80),
                (2, 2, 500, 1100, 128)]


# The same check in Triton's interpreter on a CPU: small shapes, across several tiles.
CHECK_SHAPES_CPU = [(1, 2, 40, 40, 32), (1, 2, 20, 45, 16)]


def check_kernel(device: str = "cuda", dtypes=(torch.bfloat16, torch.float16),
                 shapes=CHECK_SHAPES) -> list[dict]:
    """The Triton kernel against scaled_dot_product_attention, forward and backward, causal and
    not: its relative error from a float64 reference must be at most twice that of PyTorch's
    own attention in the same dtype (plus 1e-3), with no NaN."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    rows = []
    for dtype in dtypes:
        for batch, heads, query_len, key_len, head_dim in shapes:
            for causal in (False, True):
                generator = torch.Generator(device=device).manual_seed(len(rows))
                q, k, v, grad = (torch.randn(batch, heads, n, head_dim, device=device,
                                             generator=generator)
                                 for n in (query_len, key_len, key_len, query_len))
                # PyTorch's is_causal is top-left: equal to ours only when Lq = Lk.
                square = query_len == key_len
                mask = causal_mask(query_len, key_len, device) if causal and not square else None

                def run(function, inputs, grad=grad):
                    inputs = [t.detach().clone().requires_grad_() for t in inputs]
                    output = function(*inputs)
                    output.backward(grad.to(output.dtype))
                    return [output.detach()] + [t.grad for t in inputs]

                def sdpa(*inputs, mask=mask, is_causal=causal and square):
                    return F.scaled_dot_product_attention(*inputs, attn_mask=mask,
                                                          is_causal=is_causal)

                with sdpa_kernel(SDPBackend.MATH):  # the reference: float64, materialised
                    reference = run(sdpa, [t.double() for t in (q, k, v)])
                low = [t.to(dtype) for t in (q, k, v)]
                theirs = run(sdpa, low)
                ours = run(lambda *x, c=causal: flash_attention(*x, causal=c), low)
                for name, o, t, r in zip(("output", "dq", "dk", "dv"), ours, theirs, reference,
                                         strict=True):
                    error, torch_error = relative_error(o, r), relative_error(t, r)
                    rows.append({"dtype": str(dtype)[6:], "shape": [batch, heads, query_len,
                                                                    key_len, head_dim],
                                 "causal": causal, "tensor": name, "error": error,
                                 "torch_error": torch_error,
                                 "ok": bool(o.isfinite().all())
                                 and error <= 2 * torch_error + 1e-3})
    return rows


def measure_ceilings() -> dict:
    """Measured, not datasheet: a bfloat16 matrix product and a device-to-device copy."""
    import triton.testing

    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    ms = triton.testing.do_bench(lambda: a @ b, return_mode="median")
    source = torch.randn(2 ** 28, device="cuda")  # 1 GiB
    target = torch.empty_like(source)
    copy_ms = triton.testing.do_bench(lambda: target.copy_(source), return_mode="median")
    return {"matmul_bf16_8192_tflops": 2 * 8192 ** 3 / (ms * 1e-3) / 1e12,
            "copy_gbps_read_plus_write": 2 * source.nbytes / (copy_ms * 1e-3) / 1e9}

DEFAULTS = {  # the sweep of each device kind, the headline (d = 128, long N) first
    "cuda": {"seq_lens": [16384, 8192, 4096, 2048, 1024], "head_dims": [128, 64], "batch": 4,
             "heads": 16, "dtype": "bfloat16"},
    "cpu": {"seq_lens": [128, 256, 512, 1024], "head_dims": [64], "batch": 1, "heads": 4,
            "dtype": "float32"},
}
OUTPUT_FILES = ("results.json (the device, versions, dtype, shapes and every measurement), "
                "results.csv, time.png, memory.png (CUDA only); with --check, check.json; "
                "--environment: environment.json; --tune: tiles-<device>.json; --models: "
                "models.json and models.csv")


def _defaults_text() -> str:
    return "\n".join(f"  {device}: " + ", ".join(f"{k}={v}" for k, v in sweep.items())
                     for device, sweep in DEFAULTS.items())


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m day07_flash_attention.benchmark",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"default sweep of each device (an option overrides it):\n{_defaults_text()}\n"
               f"files written to the output folder: {OUTPUT_FILES}")
    positive = bench.positive_int_argument
    parser.add_argument("--device", choices=["cuda", "cpu"],
                        default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seq-lens", type=positive, nargs="+", help="sequence lengths N")
    parser.add_argument("--head-dims", type=positive, nargs="+", help="head dimensions d")
    parser.add_argument("--batch", type=positive)
    parser.add_argument("--heads", type=positive)
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--methods", nargs="+", choices=METHODS,
                        help="default: all (on a CPU, all but triton, whose interpreter is "
                             "not a speed)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--causal", choices=["both", "yes", "no"], default="both")
    parser.add_argument("--threads", type=positive,
                        help="CPU threads for PyTorch (default on a CPU: 1, whose times are "
                             "steadier on shared cores)")
    parser.add_argument("--output", type=bench.output_folder_argument,
                        help=f"folder for the results (default on CUDA: {RESULTS}; on a CPU: "
                             "a new temporary folder, since CPU numbers are not the "
                             "committed GPU results)")
    parser.add_argument("--check", action="store_true",
                        help="first check the Triton kernel against "
                             "scaled_dot_product_attention (on CUDA bfloat16 and float16; on "
                             "a CPU float16, small, in the interpreter); stop if it fails")
    parser.add_argument("--tiles", type=Path,
                        help="a tiles-<device>.json of --tune to use instead of results/'s")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check-only", action="store_true", help="the check, no sweep")
    mode.add_argument("--environment", action="store_true",
                      help="only the device, versions and (CUDA) measured ceilings")
    mode.add_argument("--tune", action="store_true",
                      help="time candidate tiles of each kernel at the first --seq-lens "
                           "(default 8192) and write the best to tiles-<device>.json")
    mode.add_argument("--models", action="store_true",
                      help="time one training step of Day 3's Transformer and Day 6's ViT "
                           "with standard and flash attention (CPU: tiny sizes)")
    parser.add_argument("--max-candidates", type=positive,
                        help="--tune: at most this many candidates per kernel (a dry run)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this machine has no CUDA device")
    args.check = args.check or args.check_only
    args.seq_lens_given = args.seq_lens is not None  # --tune times one length: 8192 unless given
    for name, value in DEFAULTS[args.device].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.methods is None:
        args.methods = [m for m in METHODS if args.device == "cuda" or m != "triton"]
    return args


def main(argv=None) -> int:
    args = parse_arguments(argv)
    if args.device == "cpu":
        bench.set_cpu_threads(args.threads)
    elif args.threads:
        torch.set_num_threads(args.threads)
    folder = args.output or (RESULTS if args.device == "cuda" else
                             Path(tempfile.mkdtemp(prefix="day07_benchmark_cpu_")))
    folder.mkdir(parents=True, exist_ok=True)
    if args.tiles:
        from day07_flash_attention import kernels

        print(f"tiles of {kernels.load_tuned_tiles(args.tiles)} from {args.tiles}")
    metadata = {**bench.environment(args.device), "command": " ".join(sys.argv),
                "dtype": args.dtype, "batch": args.batch, "heads": args.heads,
                "seq_lens": args.seq_lens, "head_dims": args.head_dims,
                "tiles": str(args.tiles) if args.tiles else "default"}
    if args.environment:
        if args.device == "cuda":
            metadata["ceilings"] = measure_ceilings()
        bench.write_json(folder / "environment.json", metadata)
        print("\n".join(f"{key}: {value}" for key, value in metadata.items()))
        return 0
    if args.tune:
        return _tune(args, folder)
    if args.models:
        return _models(args, folder, metadata)
    if args.check:
        if args.device == "cuda":
            supported = [getattr(torch, d) for d in ("bfloat16", "float16")
                         if d == "float16" or torch.cuda.get_device_capability(0) >= (8, 0)]
            checks = check_kernel("cuda", supported)
        else:
            checks = check_kernel("cpu", (torch.float16,), CHECK_SHAPES_CPU)
        bench.write_json(folder / "check.json", {"metadata": metadata, "checks": checks})
        for c in checks:
            print(f"check {c['dtype']:8s} {str(c['shape']):26s} causal={c['causal']!s:5s} "
                  f"{c['tensor']:6s} error {c['error']:.2e} (torch {c['torch_error']:.2e}) "
                  f"{'ok' if c['ok'] else 'FAILED'}")
        failed = sum(not c["ok"] for c in checks)
        if failed:
            print(f"the Triton kernel failed {failed} of {len(checks)} checks: no benchmark",
                  file=sys.stderr)
            return 1
        print(f"the Triton kernel passed all {len(checks)} checks", flush=True)
        if args.check_only:
            return 0
    if args.device == "cuda":
        metadata["ceilings"] = measure_ceilings()
    causal = {"both": (False, True), "yes": (True,), "no": (False,)}[args.causal]

    def checkpoint(rows):  # results.json and .csv so far, marked incomplete, in case the run
        bench.save_rows(rows, {**metadata, "complete": False}, folder)  # is stopped

    rows = run_sweep(args.seq_lens, args.head_dims, args.methods, args.modes, causal,
                     args.batch, args.heads, getattr(torch, args.dtype), args.device,
                     checkpoint=checkpoint)
    written = save_results(rows, {**metadata, "complete": True}, folder)
    print(format_table(rows))
    print("wrote", ", ".join(str(p) for p in written))
    return 0


def _tune(args, folder: Path) -> int:
    from day07_flash_attention import tuning

    default_length = tuning.SEQ_LEN if args.device == "cuda" else 32  # CPU: the interpreter
    path = tuning.tune(folder, args.device,
                       args.seq_lens[0] if args.seq_lens_given else default_length,
                       args.batch, args.heads, args.head_dims,
                       candidates_of=lambda kernel: tuning.candidates(kernel)[
                           :args.max_candidates])
    return 0 if path.is_file() else 1


def _models(args, folder: Path, metadata: dict) -> int:
    from day07_flash_attention import model_benchmark

    def checkpoint(rows):
        bench.save_rows(rows, {**metadata, "complete": False}, folder, stem="models")

    rows = model_benchmark.run_model_benchmark(
        args.device, "gpu" if args.device == "cuda" else "tiny", checkpoint=checkpoint)
    bench.save_rows(rows, {**metadata, "complete": True}, folder, stem="models")
    print(model_benchmark.format_model_table(rows))
    return 0


# `python -m` sets __spec__; a notebook running this cell has none, and runs nothing here.
if __name__ == "__main__" and globals().get("__spec__") is not None:
    sys.exit(main())
