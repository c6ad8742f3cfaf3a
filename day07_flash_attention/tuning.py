"""Tile tuning of Day 7's Triton kernels: which (BLOCK_M, BLOCK_N, num_warps, num_stages) is
fastest for each kernel, head dimension and causal flag on this GPU.

    python3 -m day07_flash_attention.benchmark --tune [--output FOLDER]

Written by hand, like `benchmark.py`: engineering that the notebook does not teach.

1. Filter, ahead of time and in parallel worker processes: each candidate is compiled for the
   device's architecture with the same specialisation as a launch (16-byte aligned pointers
   and strides, unit last stride), and refused when its shared memory exceeds the device's or
   when registers spill to the stack (cuobjdump's resource report). On a GPU the worker then
   launches it once on small inputs, which leaves the compiled kernel in Triton's disk cache.
2. Time the survivors one at a time in this process (`triton.testing.do_bench`, median) at
   N = 8192 in bfloat16, and check each one's outputs against the default tiles'.
3. Write every candidate's figures and the best per case to `tiles-<device name>.json`, after
   each case, so that a stopped run keeps what it measured. The launchers read that file from
   `results/` (`kernels.tuned_tiles`).
"""
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import benchmark as bench
from day07_flash_attention.benchmark import relative_error

KERNELS = ("forward", "dq", "dkdv")
KERNEL_FUNCTIONS = {"forward": "_attention_forward", "dq": "_attention_backward_dq",
                    "dkdv": "_attention_backward_dkdv"}
HEAD_DIMS = (64, 128)
SEQ_LEN, BATCH, HEADS = 8192, 4, 16
HOPPER_SHARED_MEMORY = 232_448  # bytes per block on sm_90 (H100, H200), opt-in maximum
MAX_RELATIVE_ERROR = 1e-2  # another summation order moves bf16 results by ~1e-3, a bug by ~1


def candidates(kernel: str) -> list[tuple[int, int, int, int]]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages) to try. dK/dV loops over query blocks, so its
    BLOCK_M is the inner tile and stays small; the others loop over key blocks."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    block_ms, block_ns = ((16, 32, 64), (64, 128)) if kernel == "dkdv" else \
        ((64, 128), (32, 64, 128))
    return list(itertools.product(block_ms, block_ns, (4, 8), (2, 3, 4)))


def compile_report(kernel: str, head_dim: int, causal: bool, tiles, capability: int = 90,
                   dtype: str = "bf16") -> dict:
    """Compile one candidate ahead of time for compute capability `capability` (no GPU
    needed); its shared memory (bytes per block), registers and stack (bytes per thread: a
    spill) from the compiled binary. Needs TRITON_INTERPRET=0 when Triton was imported."""
    import inspect

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from day07_flash_attention import kernels

    function = getattr(kernels, KERNEL_FUNCTIONS[kernel])
    names = list(inspect.signature(function.fn).parameters)
    block_m, block_n, num_warps, num_stages = tiles
    constants = {"CAUSAL": causal, "HAS_KEY_MASK": False, "HEAD_DIM": head_dim,
                 "BLOCK_D": kernels._block_d(head_dim), "BLOCK_M": block_m, "BLOCK_N": block_n,
                 "INPUT_PRECISION": "tf32"}
    signature = {}
    for name in names:
        if name in constants:
            signature[name] = "constexpr"
        elif name.startswith("stride_") and name.endswith("d"):  # 1, specialised as a launch
            signature[name], constants[name] = "constexpr", 1
        elif name in ("LSE", "DELTA"):
            signature[name] = "*fp32"
        elif name == "KEY_MASK":
            signature[name] = "*u8"
        elif name == "scale":
            signature[name] = "fp32"
        elif name.isupper():
            signature[name] = f"*{dtype}"
        else:
            signature[name] = "i32"
    # A launch marks 16-byte aligned pointers and ints divisible by 16 (the lengths are
    # not specialised); the loads' width and pipelining depend on it.
    aligned = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(names)
               if signature[name].startswith("*")
               or (signature[name] == "i32" and name not in ("query_len", "key_len"))}
    source = ASTSource(fn=function, signature=signature, attrs=aligned,
                       constexprs={(names.index(k),): v for k, v in constants.items()
                                   if k in names})
    compiled = triton.compile(source, target=GPUTarget("cuda", capability, 32),
                              options={"num_warps": num_warps, "num_stages": num_stages})
    usage = _resource_usage(compiled.asm["cubin"])
    return {"shared": compiled.metadata.shared, "registers": usage["REG"],
            "stack": usage["STACK"]}


def _resource_usage(cubin: bytes) -> dict[str, int]:
    """REG, STACK, ... of a kernel binary, from the cuobjdump that Triton ships."""
    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
        file.write(cubin)
        file.flush()
        report = subprocess.run([str(tool), "-res-usage", file.name], capture_output=True,
                                text=True, check=True).stdout
    line = next(line for line in report.splitlines() if "REG:" in line)
    return {key: int(value) for key, value in
            (item.split(":")[:2] for item in line.split() if ":" in item)
            if value.isdigit()}


def rejection(report: dict, shared_limit: int) -> str | None:
    """Why a compiled candidate cannot be used on a device, or None if it can."""
    if report["shared"] > shared_limit:
        return f"needs {report['shared']} B of shared memory, the device has {shared_limit} B"
    if report["stack"] > 0:
        return f"registers spill: {report['stack']} B of stack per thread"
    return None


def _filter_one(job: dict) -> dict:
    """In a worker process: compile, filter, and on a GPU warm Triton's cache with a launch."""
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9 warns when unset
    result = {**job, "status": "ok", "note": ""}
    try:
        result.update(compile_report(job["kernel"], job["head_dim"], job["causal"],
                                     job["tiles"], job["capability"]))
        reason = rejection(result, job["shared_limit"])
        if reason:
            return {**result, "status": "rejected", "note": reason}
        if torch.cuda.is_available():
            inputs = tuning_inputs(256, job["head_dim"], torch.bfloat16, "cuda", job["batch"],
                                   job["heads"])
            run_candidate(job["kernel"], inputs, job["causal"], job["tiles"])
            torch.cuda.synchronize()
    except Exception as error:  # a candidate that cannot compile or launch is not a candidate
        return {**result, "status": "rejected", "note": bench.failure(error)["note"]}
    return result


def filter_candidates(jobs: list[dict], workers: int) -> list[dict]:
    """`_filter_one` of every job, spread over `workers` fresh Python processes (Triton
    compiles on the CPU), which start with TRITON_INTERPRET=0 so that they compile even on a
    machine without a GPU."""
    environment = {**os.environ, "TRITON_INTERPRET": "0"}
    shares = [jobs[i::workers] for i in range(workers) if jobs[i::workers]]
    processes = [subprocess.Popen([sys.executable, "-m", "day07_flash_attention.tuning"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=environment)
                 for _ in shares]
    results = []
    for process, share in zip(processes, shares, strict=True):  # small: fits the pipe
        process.stdin.write(json.dumps(share))
        process.stdin.flush()
        process.stdin.close()
        process.stdin = None  # communicate() below only reads
    for process in processes:
        output, error = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"a tuning worker failed: {error[-2000:]}")
        results += json.loads(output)
    order = {id(job): i for i, job in enumerate(jobs)}
    keyed = dict(zip([id(job) for share in shares for job in share], results, strict=True))
    return [keyed[key] for key in sorted(keyed, key=order.get)]


def tuning_inputs(seq_len: int, head_dim: int, dtype, device, batch: int, heads: int) -> dict:
    """Query, key, value, upstream gradient, and the forward's output and log-sum-exp."""
    from day07_flash_attention import kernels

    generator = torch.Generator(device=device).manual_seed(0)
    q, k, v, grad = (torch.randn(batch, heads, seq_len, head_dim, dtype=dtype, device=device,
                                 generator=generator) for _ in range(4))
    scale = head_dim ** -0.5
    out, lse = kernels.flash_forward(q, k, v, False, None, scale)
    return {"q": q, "k": k, "v": v, "grad": grad, "scale": scale, "out": out, "lse": lse}


def run_candidate(kernel: str, inputs: dict, causal: bool, tiles) -> list[torch.Tensor]:
    """The outputs of `kernel` with `tiles` (None: the launchers' default): the forward's
    output, or the backward's dQ (kernel "dq") or dK and dV ("dkdv"). A backward candidate is
    timed with the other backward kernel at its default tiles: the same time for every
    candidate, so the ranking is the kernel's."""
    from day07_flash_attention import kernels

    q, k, v, scale = inputs["q"], inputs["k"], inputs["v"], inputs["scale"]
    chosen = None if tiles is None else {kernel: tuple(tiles)}
    if kernel == "forward":
        return [kernels.flash_forward(q, k, v, causal, None, scale, chosen)[0]]
    if causal not in inputs:  # the forward's output and log-sum-exp depend on the flag
        inputs[causal] = kernels.flash_forward(q, k, v, causal, None, scale)
    out, lse = inputs[causal]
    dq, dk, dv = kernels.flash_backward(q, k, v, out, lse, inputs["grad"], causal, None, scale,
                                        chosen)
    return [dq] if kernel == "dq" else [dk, dv]


def time_candidates(filtered: list[dict], inputs: dict, device: str, progress=None) -> None:
    """Time each candidate that passed the filter (in place: "ms", "error" against the
    default tiles, and status "ok", "wrong" or "error"). On a CPU (the interpreter: a test of
    the plumbing, not a speed), one run each."""
    references = {}
    for row in filtered:
        if row["status"] != "ok":
            continue
        kernel, causal = row["kernel"], row["causal"]
        try:
            if (kernel, causal) not in references:
                references[kernel, causal] = run_candidate(kernel, inputs, causal, None)
            result = run_candidate(kernel, inputs, causal, row["tiles"])
            row["error"] = max(relative_error(r, e) for r, e in
                               zip(result, references[kernel, causal], strict=True))
            if not row["error"] <= MAX_RELATIVE_ERROR:  # NaN fails too
                row.update(status="wrong", note=f"relative error {row['error']:.2e} from the "
                                                f"default tiles' outputs")
                continue
            if device == "cuda":
                import triton.testing

                row["ms"] = triton.testing.do_bench(
                    lambda k=kernel, c=causal, t=row["tiles"]: run_candidate(k, inputs, c, t),
                    warmup=10, rep=40, return_mode="median")
            else:
                row["ms"] = bench.time_cpu(lambda k=kernel, c=causal, t=row["tiles"]:
                                           run_candidate(k, inputs, c, t), 0.0, 1)["ms"]
        except (RuntimeError, ValueError) as error:
            row.update(bench.failure(error))
        finally:
            bench.release_memory(device)
        if progress:
            progress(row)


def best_tiles(rows: list[dict]) -> dict:
    """{kernel: {"64"/"128": {"full"/"causal": tiles}}}: the fastest correct candidate of each
    case; head dimensions up to 64 share the "64" entry, the wider ones the "128" entry."""
    best = {}
    for row in rows:
        if row.get("status") != "ok" or row.get("ms") is None:
            continue
        slot = best.setdefault(row["kernel"], {}).setdefault(
            "64" if row["head_dim"] <= 64 else "128", {})
        flag = "causal" if row["causal"] else "full"
        if flag not in slot or row["ms"] < slot[flag][1]:
            slot[flag] = (list(row["tiles"]), row["ms"])
    return {kernel: {d: {flag: tiles for flag, (tiles, _) in flags.items()}
                     for d, flags in dims.items()} for kernel, dims in best.items()}


def tune(output: Path, device: str = "cuda", seq_len: int = SEQ_LEN, batch: int = BATCH,
         heads: int = HEADS, head_dims=HEAD_DIMS, causal_flags=(False, True),
         kernel_names=KERNELS,
         candidates_of=candidates, workers: int | None = None, capability: int | None = None,
         shared_limit: int | None = None, log=print) -> Path:
    """Filter, time and write `tiles-<device name>.json` in `output`; returns its path. On a
    CPU (tests and dry runs) the filter compiles for `capability` (default 90, Hopper) and
    `shared_limit` (default Hopper's), and the timing runs in the interpreter."""
    from day07_flash_attention import kernels

    kind = bench.device_kind(device)
    if kind == "cuda":
        major, minor = torch.cuda.get_device_capability()
        capability = capability or 10 * major + minor
        shared_limit = shared_limit or triton_max_shared_memory()
        dtype = torch.bfloat16
    else:
        capability, shared_limit = capability or 90, shared_limit or HOPPER_SHARED_MEMORY
        dtype = torch.float16  # the interpreter's bfloat16 dot is wrong
    environment = bench.environment(kind)
    path = Path(output) / f"tiles-{kernels.device_slug(environment['device_name'])}.json"
    payload = {**environment, "complete": False, "dtype": str(dtype)[6:], "seq_len": seq_len,
               "batch": batch, "heads": heads, "capability_compiled": capability,
               "shared_limit": shared_limit, "best": {}, "candidates": []}
    jobs = [{"kernel": kernel, "head_dim": d, "causal": causal, "tiles": list(tiles),
             "capability": capability, "shared_limit": shared_limit, "batch": batch,
             "heads": heads}
            for d in head_dims for kernel in kernel_names for causal in causal_flags
            for tiles in candidates_of(kernel)]
    started = time.perf_counter()
    filtered = filter_candidates(jobs, workers or max(1, (os.cpu_count() or 2) - 1))
    usable = sum(row["status"] == "ok" for row in filtered)
    log(f"tune: {usable} of {len(jobs)} candidates fit (compiled in "
        f"{time.perf_counter() - started:.0f} s)")
    payload["candidates"] = filtered
    bench.write_json(path, payload)

    def checkpoint(row):  # after every candidate: a stopped run keeps its figures
        payload["best"] = best_tiles(filtered)
        bench.write_json(path, payload)

    for d in head_dims:
        inputs = tuning_inputs(seq_len, d, dtype, device, batch, heads)
        time_candidates([row for row in filtered if row["head_dim"] == d], inputs, kind,
                        checkpoint)
        del inputs
        bench.release_memory(kind)
    payload.update(best=best_tiles(filtered), complete=True)
    bench.write_json(path, payload)
    log(f"tune: wrote {path} in {time.perf_counter() - started:.0f} s")
    return path


def triton_max_shared_memory() -> int:
    import triton

    properties = triton.runtime.driver.active.utils.get_device_properties(
        torch.cuda.current_device())
    return properties["max_shared_mem"]


# `python -m day07_flash_attention.tuning`: a worker of `filter_candidates`, jobs on stdin as
# JSON, results on stdout.
if __name__ == "__main__":
    sys.stdout.write(json.dumps([_filter_one(job) for job in json.loads(sys.stdin.read())]))
