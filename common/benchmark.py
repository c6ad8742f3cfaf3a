"""Measuring, for every day that times or weighs something (CONTRIBUTING.md, "Shared
infrastructure"): timing with its spread, peak memory, the environment a number comes from,
out-of-memory rows, and the output files (JSON, CSV, plots, a text table).

- On CUDA, time is `triton.testing.do_bench`'s (it flushes the L2 cache and synchronises);
  on a CPU, repeated `time.perf_counter` calls. Both report min, median and max.
- Peak memory, on CUDA: the peak of `torch.cuda.max_memory_allocated` during one call,
  minus what was allocated before it (the inputs). PyTorch keeps no statistics of the CPU
  allocator; on any device, `peak_tensor_bytes` counts instead the bytes of the tensors a
  call creates, as they are created and freed (what the computation holds, without the
  allocator's own overhead).
- A number that no run produced is never written: a row that failed says why ("OOM",
  "unsupported", "error") and has no figures; NaN and infinities, which JSON cannot hold, are
  written as null (JSON) and an empty cell (CSV).
"""

import argparse
import csv
import gc
import io
import json
import math
import numbers
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch

from common import checks

STATUSES = ("ok", "OOM", "unsupported", "error")
MEASURED_DEVICES = ("cpu", "cuda")  # each is timed its own way: host clock, or CUDA events
MAX_RUNS = 10_000  # time_cpu's most calls: enough for a steady median, and a bounded list


def device_kind(device: str | torch.device) -> str:
    """"cpu" or "cuda" for a device given as a string ("cuda", "cuda:1") or a torch.device.
    Anything else is refused: compared as a string, a torch.device("cuda") would take the
    CPU path and time kernel launches instead of kernels."""
    if isinstance(device, str):
        try:
            device = torch.device(device)
        except RuntimeError:
            raise ValueError(f"device must be one of {', '.join(MEASURED_DEVICES)} (a string or "
                             f"a torch.device), got {device!r}") from None
    if not isinstance(device, torch.device):
        raise TypeError(f"device must be a string or a torch.device, got {device!r} "
                        f"({type(device).__name__})")
    if device.type not in MEASURED_DEVICES:
        raise ValueError(f"device must be one of {', '.join(MEASURED_DEVICES)}, got "
                         f"{str(device)!r}")
    return device.type


def _cuda_index(device: str | torch.device) -> int:
    index = torch.device(device).index
    return torch.cuda.current_device() if index is None else index


def time_cpu(run: Callable[[], object], min_seconds: float = 0.2, min_runs: int = 3) -> dict:
    """Milliseconds of `run()` over at least `min_runs` calls and `min_seconds`, but never more
    than MAX_RUNS calls (a fast `run` stops there before `min_seconds`):
    {"ms": median, "ms_min": fastest, "ms_max": slowest}."""
    run = checks.as_callable(run, "run")
    min_seconds = checks.as_float(min_seconds, "min_seconds", minimum=0.0)
    min_runs = checks.positive_int(min_runs, "min_runs")
    if min_runs > MAX_RUNS:
        raise ValueError(f"min_runs must be at most MAX_RUNS = {MAX_RUNS}, got {min_runs}")
    times, started = [], time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - started < min_seconds
                                    and len(times) < MAX_RUNS):
        start = time.perf_counter()
        run()
        times.append(1000 * (time.perf_counter() - start))
    return {"ms": statistics.median(times), "ms_min": min(times), "ms_max": max(times)}


def interleaved_minimum_ms(runs: dict[str, Callable[[], object]], rounds: int = 5
                           ) -> dict[str, float]:
    """The fastest of `rounds` calls of each run, in milliseconds, after one warm-up call of
    each. The runs take turns (a, b, c, a, b, c, ...), so that a burst of load from another
    process slows every run alike instead of one of them; the minimum is the call that was
    disturbed least. For comparisons of times that a notebook asserts (CONTRIBUTING.md,
    "Experiments", rule 3)."""
    rounds = checks.positive_int(rounds, "rounds")
    if rounds > MAX_RUNS:
        raise ValueError(f"rounds must be at most MAX_RUNS = {MAX_RUNS}, got {rounds}")
    if not isinstance(runs, dict) or not runs:
        raise TypeError(f"runs must be a non-empty dict of name -> callable, got {runs!r}")
    for name, run in runs.items():  # all checked before any is called
        checks.as_callable(run, f"runs[{name!r}]")
    for run in runs.values():
        run()  # warm up: caches, lazy initialisation
    fastest = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            fastest[name] = min(fastest[name], 1000 * (time.perf_counter() - start))
    return fastest


def time_cuda(run: Callable[[], object], grad_to_none: Sequence[torch.Tensor] | None = None
              ) -> dict:
    """Milliseconds of `run()` on CUDA by `triton.testing.do_bench`: median, min and max."""
    import triton.testing

    fastest, median, slowest = triton.testing.do_bench(run, grad_to_none=grad_to_none,
                                                       quantiles=[0.0, 0.5, 1.0])
    return {"ms": median, "ms_min": fastest, "ms_max": slowest}


def peak_cuda_mib(run: Callable[[], object], device: str | torch.device = "cuda") -> float:
    """MiB that one call of `run()` allocates at its peak on `device`, above what was
    allocated before."""
    index = _cuda_index(device)
    torch.cuda.synchronize(index)
    torch.cuda.reset_peak_memory_stats(index)
    baseline = torch.cuda.memory_allocated(index)
    run()
    torch.cuda.synchronize(index)
    return (torch.cuda.max_memory_allocated(index) - baseline) / 2 ** 20


class _LiveTensorBytes:
    """The bytes held by the storages that operations create, tracked as they are created
    (a TorchDispatchMode sees every operation's outputs) and freed (a finalizer on each
    output tensor; PyTorch keeps a tensor's Python object alive as long as the tensor lives)."""

    def __init__(self):
        self.holders: dict[tuple, int] = {}  # storage -> number of live tensors on it
        self.sizes: dict[tuple, int] = {}
        self.current = self.peak = 0

    def track(self, tensor: torch.Tensor, inputs: set) -> None:
        import weakref

        storage = tensor.untyped_storage()
        if storage.device.type == "meta":
            raise ValueError("peak_tensor_bytes tells storages apart by their address, which "
                             "meta tensors do not have (all are 0): run it on real tensors")
        key = (str(storage.device), storage.data_ptr())
        if storage.nbytes() == 0 or (key in inputs and key not in self.holders):
            return  # empty, or a view or in-place result of a tensor made before the call
        if key not in self.holders:
            self.holders[key], self.sizes[key] = 0, storage.nbytes()
            self.current += storage.nbytes()
            self.peak = max(self.peak, self.current)
        self.holders[key] += 1
        weakref.finalize(tensor, self.release, key)

    def release(self, key: tuple) -> None:
        self.holders[key] -= 1
        if self.holders[key] == 0:
            del self.holders[key]
            self.current -= self.sizes.pop(key)


def _watched(run: Callable[[], object]) -> tuple[object, _LiveTensorBytes]:
    """`run()`'s result, and the record of the bytes held by the tensors it created."""
    from torch.utils import _pytree as pytree
    from torch.utils._python_dispatch import TorchDispatchMode

    checks.as_callable(run, "run")

    live = _LiveTensorBytes()

    class Watch(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            # The inputs' storages before the call: an out= argument that the operation grows
            # gets new memory, which counts.
            inputs = {(str(t.untyped_storage().device), t.untyped_storage().data_ptr())
                      for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
            if func in (torch.ops.aten.lift_fresh.default, torch.ops.aten.lift_fresh_copy.default):
                inputs = set()  # torch.tensor(data): its input was made just now, out of sight
            output = func(*args, **(kwargs or {}))
            for tensor in pytree.tree_leaves(output):
                if isinstance(tensor, torch.Tensor):
                    live.track(tensor, inputs)
            return output

    with Watch():
        result = run()
    return result, live


def peak_tensor_bytes(run: Callable[[], object]) -> int:
    """The peak, during `run()`, of the bytes held by the tensors it creates, on any device:
    the memory the computation needs beyond its inputs. Exact and deterministic, unlike a
    process's resident memory; it leaves out an operation's internal workspace and the
    allocator's own overhead. The result of `run()` is freed before returning."""
    result, live = _watched(run)
    del result
    gc.collect()
    return live.peak


def held_tensor_bytes(run: Callable[[], object]) -> int:
    """The bytes still held, when `run()` returns, by the tensors it created: its result and
    everything the result keeps alive, such as what autograd saved for the backward pass of
    a forward pass. Counted like `peak_tensor_bytes`; the result is freed before returning."""
    result, live = _watched(run)
    gc.collect()
    held = live.current
    del result
    return held


def measure(run: Callable[[], object], device: str | torch.device,
            reset: Callable[[], None] = lambda: None,
            grad_to_none: Sequence[torch.Tensor] | None = None) -> dict:
    """Time (min, median, max) and, on CUDA, peak MiB of `run()`, after one warm-up call.
    `device` ("cpu", "cuda", "cuda:1" or a torch.device) is where `run` computes; `reset()`
    runs after every call (for example, to clear gradients)."""
    kind = device_kind(device)
    run, reset = checks.as_callable(run, "run"), checks.as_callable(reset, "reset")
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} needs CUDA, which this machine does not have")
    run()  # warm up: compilation, caches, lazy initialisation
    reset()
    if kind == "cpu":
        return {**time_cpu(lambda: (run(), reset())), "peak_mib": None}
    with torch.cuda.device(_cuda_index(device)):  # do_bench's events: on the current device
        peak_mib = peak_cuda_mib(run, device)
        reset()
        return {**time_cuda(run, grad_to_none), "peak_mib": peak_mib}


def is_out_of_memory(error: BaseException) -> bool:
    """True for PyTorch's out-of-memory error and for a backend's "out of memory" message."""
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def failure(error: BaseException) -> dict:
    """The status ("OOM" or "error") and note (the message's first line) of a row whose
    measurement raised `error`; such a row keeps no figures."""
    message = str(error).strip().splitlines()
    return {"status": "OOM" if is_out_of_memory(error) else "error",
            "note": message[0][:160] if message else type(error).__name__}


def release_memory(device: str | torch.device) -> None:
    """After a failed call: autograd graphs can hold memory in reference cycles."""
    if device_kind(device) == "cuda":
        gc.collect()
        torch.cuda.empty_cache()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str | torch.device) -> dict:
    """Where the numbers come from: the device, the versions, the threads, and when."""
    kind = device_kind(device)
    info = {"device": kind, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if kind == "cuda":
        index = _cuda_index(device)
        properties = torch.cuda.get_device_properties(index)
        info.update(device_name=properties.name, cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(),
                    capability=".".join(map(str, torch.cuda.get_device_capability(index))),
                    memory_gib=round(properties.total_memory / 2 ** 30, 1),
                    multiprocessors=properties.multi_processor_count)
    else:
        info.update(device_name=cpu_name(), threads=torch.get_num_threads())
    return info


_open_containers: set[int] = set()  # the lists and dicts that _json_ready is inside


def _json_ready(value, where: str):
    """`value` with NaN and infinities as None, tuples as lists and NumPy numbers as Python
    ones; TypeError naming `where` (the key path, e.g. rows[3]["ms"]) for anything that JSON
    cannot hold, instead of json's "Object of type Tensor is not JSON serializable"."""
    if value is None or isinstance(value, str | bool):
        return value
    if type(value).__name__ == "bool" and type(value).__module__ == "numpy":  # np.bool_
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, list | tuple | dict) and id(value) in _open_containers:
        raise ValueError(f"{where or 'payload'} contains itself (a list or dict inside "
                         "itself), which JSON cannot write")
    if isinstance(value, list | tuple):
        _open_containers.add(id(value))
        try:
            return [_json_ready(item, f"{where}[{i}]") for i, item in enumerate(value)]
        finally:
            _open_containers.discard(id(value))
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str | int | float | bool | None):
                raise TypeError(f"{where or 'payload'} has the key {checks.describe(key)}; "
                                f"JSON holds str, int, float, bool or None keys")
            if isinstance(key, float) and not math.isfinite(key):
                raise ValueError(f"{where or 'payload'} has the key {key!r}; JSON has no NaN "
                                 "or infinity")
        # JSON's keys are strings: 1 and "1" would both be written as "1", and reading the
        # file back would keep only the last.
        written = [json.dumps(key) if not isinstance(key, str) else key for key in value]
        written = [key.strip('"') if isinstance(key, str) else key for key in written]
        if len(set(written)) != len(written):
            raise ValueError(f"{where or 'payload'} has keys that JSON writes alike: "
                             f"{list(value)}; make them distinct as strings")
        _open_containers.add(id(value))
        try:
            return {key: _json_ready(item, f"{where}[{json.dumps(key)}]" if where else str(key))
                    for key, item in value.items()}
        finally:
            _open_containers.discard(id(value))
    raise TypeError(f"{where} cannot be written as JSON: got {checks.describe(value)}; "
                    f"expected None, a bool, a number, a str, or a list or dict of them")


def _json_text(ready: dict) -> str:
    # allow_nan=False: a guard, since _json_ready has already made every NaN a None
    return json.dumps(ready, indent=1, allow_nan=False) + "\n"


def _write_whole(path: Path, text: str) -> Path:
    """`text` written to a temporary file and then renamed, so that a run stopped while
    writing leaves the previous complete file, and a failed write leaves no temporary one."""
    path = Path(path)
    if not path.parent.is_dir():  # else the error would name the temporary file
        raise FileNotFoundError(f"path's folder {path.parent} does not exist (path={path})")
    if path.is_dir():
        raise IsADirectoryError(f"path must be a file, got the folder {path}")
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_text(text, newline="")  # as made: the CSV's own line ends, "\r\n"
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, payload: dict) -> Path:
    """`payload` as indented JSON, written whole or not at all (nothing is written when a
    value cannot be). NaN and infinities are written as null, since JSON has no such
    numbers: Day 7's check of a kernel that outputs NaN has the error NaN, and its file is
    written before the failure is reported."""
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a dict, got {checks.describe(payload)}")
    if not isinstance(path, str | Path):
        raise TypeError(f"path must be a file path, got {checks.describe(path)}")
    try:
        ready = _json_ready(payload, "")
    except RecursionError:
        raise ValueError("payload is nested deeper than Python's recursion limit") from None
    finally:
        _open_containers.clear()
    return _write_whole(path, _json_text(ready))


def save_rows(rows: list[dict], metadata: dict, folder: Path, stem: str = "results"
              ) -> list[Path]:
    """`stem`.json ({"metadata", "rows"}) and `stem`.csv (the rows) in `folder`, as
    `write_json` writes: both files are made before either is written, so that a value that
    cannot be written leaves the previous files (and no folder) as they were."""
    if not isinstance(rows, list | tuple):
        raise TypeError(f"rows must be a list of dicts, got {checks.describe(rows)}")
    if not isinstance(folder, str | Path):
        raise TypeError(f"folder must be a path, got {checks.describe(folder)}")
    if not isinstance(stem, str) or not stem or Path(stem).name != stem:
        raise ValueError(f"stem must be a file name without folders, got {stem!r}")
    if Path(folder).exists() and not Path(folder).is_dir():
        raise ValueError(f"folder must be a folder, got the file {folder}")
    if not rows:
        raise ValueError("rows must hold at least one measurement, got none")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise TypeError(f"rows[{i}] must be a dict, got {checks.describe(row)}")
    ready = _json_ready({"metadata": metadata, "rows": rows}, "")
    columns = [str(key) for key in dict.fromkeys(k for row in ready["rows"] for k in row)]
    if len(set(columns)) < len(columns):  # the CSV's header would name two columns alike
        raise ValueError(f"rows have keys that a CSV header writes alike: {columns}")
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(ready["rows"])  # as in the JSON: NaN (None) as an empty cell
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [_write_whole(folder / f"{stem}.json", _json_text(ready)),
            _write_whole(folder / f"{stem}.csv", table.getvalue())]


def plot_panels(rows: list[dict], path: Path, quantity: str, label: str, x: str,
                panel: Callable[[dict], tuple], panel_title: Callable[[tuple], str],
                line: str = "method", title: str = "") -> Path | None:
    """One log-log panel per value of `panel(row)` (a tuple), one line per value of `row[line]`:
    `quantity` against `x`. None (and no file) when no row has the quantity."""
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    rows = [r for r in rows if r.get(quantity) is not None]
    if not rows:
        return None
    for i, row in enumerate(rows):
        missing = [key for key in (x, line) if row.get(key) is None]
        if missing:
            raise ValueError(f"rows[{i}] has {quantity!r} but no value for {missing} (the x "
                             f"axis and the line's key): {row!r}")
        if not row[x] > 0 or not row[quantity] > 0:  # a log axis would leave it out unseen
            raise ValueError(f"rows[{i}] must have positive {x!r} and {quantity!r} for the "
                             f"log-log axes, got {row[x]!r} and {row[quantity]!r}")
    keys = [panel(r) for r in rows]
    for key in keys:
        if not isinstance(key, tuple):  # a set needs hashable keys, and sorted() comparable
            raise TypeError(f"panel must return a tuple for every row, got {key!r}")
    panels = sorted(set(keys))
    fig = Figure(figsize=(4.2 * len(panels), 3.8))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, key in zip(axes, panels, strict=True):
        for name in dict.fromkeys(r[line] for r in rows):
            points = sorted((r[x], r[quantity]) for r in rows
                            if r[line] == name and panel(r) == key)
            if points:
                ax.loglog(*zip(*points, strict=True), "o-", base=2, label=name)
        ax.set(title=panel_title(key), xlabel=x, ylabel=label)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def format_table(rows: Iterable[dict], columns: Sequence[tuple[str, str, str]]) -> str:
    """A fixed-width text table. `columns` are (key, header, format spec); numbers (a spec)
    align right, text left. A row whose "status" is not "ok" shows the status and its note
    in place of the figures."""
    columns = list(columns)
    for column in columns:
        if not (isinstance(column, tuple | list) and len(column) == 3
                and all(isinstance(part, str) for part in column)):
            raise ValueError(f"columns must be (key, header, format spec) string triples, got "
                             f"{column!r}")
    texts = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise TypeError(f"rows[{i}] must be a dict, got {checks.describe(row)}")
        cells = []
        for key, _, spec in columns:
            if spec and row.get("status", "ok") != "ok":
                cells.append(f"{row['status']}  {str(row.get('note', ''))[:60]}")
                break
            value = row.get(key)
            try:
                cells.append("-" if value is None else format(value, spec) if spec else str(value))
            except (TypeError, ValueError):
                raise ValueError(f"rows[{i}][{key!r}] = {value!r} does not fit the column's "
                                 f"format {spec!r}") from None
        texts.append(cells)
    widths = [max([len(header)] + [len(cells[i]) for cells in texts if i < len(cells) - 1
                                   or len(cells) == len(columns)])
              for i, (_, header, _) in enumerate(columns)]

    def line(cells):
        return " ".join(cell.rjust(width) if spec else cell.ljust(width)
                        for cell, width, (_, _, spec) in zip(cells, widths, columns, strict=False)
                        ).rstrip()  # a failed row's status cell ends it early

    header = line([header for _, header, _ in columns])
    return "\n".join([header, "-" * len(header)] + [line(cells) for cells in texts])


def set_cpu_threads(threads: int | None) -> int:
    """Threads for PyTorch on a CPU: one by default, since on shared cores the medians of
    small operations with PyTorch's default pool jumped up to 100 times."""
    threads = 1 if threads is None else checks.positive_int(threads, "threads")
    torch.set_num_threads(threads)
    return threads


# ---------------------------------------------------------------- command-line arguments

def positive_int_argument(text: str) -> int:
    """An argparse type: a positive int, or a clear usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {value}")
    return value


def output_folder_argument(text: str) -> Path:
    """An argparse type: a folder to write into. It may not exist yet, but it is not a file,
    and the nearest folder that exists above it is writable."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder to write into, got an empty path")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, expected a folder to write into")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot create a folder {text}: {existing} is not a "
                                         f"writable folder")
    return path


def counted_flops(module: Callable, *inputs) -> int:
    """Floating-point operations of one call `module(*inputs)`, by PyTorch's FLOP counter
    (a multiply-add counts 2). Works on the meta device, where nothing is computed."""
    from torch.utils.flop_counter import FlopCounterMode

    checks.as_callable(module, "module")
    with FlopCounterMode(display=False) as counter:
        module(*inputs)
    return counter.get_total_flops()
