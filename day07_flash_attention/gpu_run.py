"""Day 7's whole GPU run in one command, for a GPU lent for a few minutes.

    python3 -m day07_flash_attention.gpu_run OUTDIR              # on the GPU, about 9 minutes
    python3 -m day07_flash_attention.gpu_run OUTDIR --dry-run    # the same plumbing on a CPU
    python -m day07_flash_attention.report OUTDIR/gpu_run.tar.gz # then, here: into results/

Written by hand: engineering, not a lesson. Needs only `python3` with torch and Triton (no
Jupyter, no nbval). The steps run in order of value, each a `benchmark` command in its own
process with its own time limit, inside one overall budget, so that a slow or failing step
costs only its own time. Everything is written under OUTDIR; after every step the work so far
is packed again into OUTDIR/gpu_run.tar.gz, beside the log OUTDIR/gpu_run.log, so that a run
stopped at any point keeps what it measured, in two files.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

ARCHIVE, LOG = "gpu_run.tar.gz", "gpu_run.log"
BUDGET_S = {"gpu": 540.0, "dry-run": 240.0}  # the device tool allows 600 s a command
PACKING_RESERVE_S = 10.0
HEADLINE = ["--head-dims", "128", "--seq-lens", "4096", "8192", "16384", "--causal", "both"]
FAST_METHODS = ["standard", "triton", "sdpa_flash", "sdpa_efficient", "sdpa_cudnn"]


@dataclass
class Step:
    name: str
    seconds: float  # its own limit; the budget left may cut it shorter
    arguments: list[str]  # of `python -m day07_flash_attention.benchmark`, or a command
    command: list[str] | None = None  # instead of the benchmark
    tuned: bool = False  # with the tiles the "tune" step wrote, if it wrote any


def plan(dry_run: bool) -> list[Step]:
    """The steps, most valuable first. The dry run takes the same steps at interpreter size."""
    tests = [sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-p", "no:cacheprovider",
             "tests/test_day07_flash_attention.py", "tests/test_day07_model_benchmark.py",
             "tests/test_day07_gpu_run.py"]
    if dry_run:
        tiny = ["--device", "cpu", "--head-dims", "16", "--seq-lens", "32", "--causal", "both"]
        return [
            Step("environment", 30, ["--device", "cpu", "--environment"]),
            Step("check", 60, ["--device", "cpu", "--check-only"]),
            Step("headline", 60, [*tiny, "--methods", "standard", "triton", "sdpa_math"]),
            Step("tune", 90, ["--device", "cpu", "--tune", "--head-dims", "16",
                              "--max-candidates", "1"]),
            Step("headline-tuned", 40, [*tiny, "--methods", "triton"], tuned=True),
            Step("models", 60, ["--device", "cpu", "--models"]),
            Step("sweep-rest", 40, [*tiny[:3], "8", "--seq-lens", "16", "--causal", "yes",
                                    "--methods", "standard", "tiled"]),
            Step("tests", 60, [], [*tests, "-k", "attention_flops or offset_check"]),
        ]
    return [
        Step("environment", 40, ["--environment"]),
        Step("check", 60, ["--check-only"]),
        Step("headline", 120, [*HEADLINE, "--methods", *FAST_METHODS]),
        Step("tune", 150, ["--tune", "--head-dims", "128", "64"]),
        Step("headline-tuned", 45, [*HEADLINE, "--methods", "triton"], tuned=True),
        Step("models", 90, ["--models"]),
        Step("sweep-rest", 120, ["--head-dims", "64", "128", "--seq-lens", "1024", "2048",
                                 "4096", "8192", "16384", "--methods", *FAST_METHODS, "tiled",
                                 "sdpa_math"], tuned=True),
        Step("tests", 120, [], tests),
    ]


def pack(work: Path, outdir: Path) -> Path:
    """OUTDIR/gpu_run.tar.gz from the work folder, replaced whole (a stop leaves the last)."""
    partial = outdir / (ARCHIVE + ".partial")
    with tarfile.open(partial, "w:gz") as archive:
        archive.add(work, arcname="gpu_run")
    return partial.replace(outdir / ARCHIVE)


def run(outdir: Path, dry_run: bool = False, budget_s: float | None = None,
        steps: list[Step] | None = None) -> list[dict]:
    """Run the steps within the budget; returns what happened to each (also in steps.json)."""
    started = time.monotonic()
    budget_s = BUDGET_S["dry-run" if dry_run else "gpu"] if budget_s is None else budget_s
    outdir.mkdir(parents=True, exist_ok=True)
    work = outdir / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    repository = Path(__file__).resolve().parent.parent
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "TRITON_DEFAULT_FP_FUSION": "1"}
    record = []

    def save():  # what happened so far, and the log, packed with the results
        (work / "steps.json").write_text(json.dumps(
            {"dry_run": dry_run, "budget_s": budget_s, "steps": record}, indent=1) + "\n")
        shutil.copy(outdir / LOG, work / LOG)
        pack(work, outdir)

    with (outdir / LOG).open("w") as log:
        def say(text):
            print(text, flush=True)
            log.write(text + "\n")
            log.flush()

        for step in steps or plan(dry_run):
            left = budget_s - PACKING_RESERVE_S - (time.monotonic() - started)
            entry = {"step": step.name, "status": "skipped", "seconds": 0.0, "limit_s": 0.0}
            if left < 5:
                entry["note"] = "no time left in the budget"
                say(f"== {step.name}: skipped, no time left")
                record.append(entry)
                continue
            folder = work / step.name
            folder.mkdir()
            arguments = list(step.arguments)
            if step.tuned:
                tiles = sorted((work / "tune").glob("tiles-*.json"))
                if tiles:
                    arguments += ["--tiles", str(tiles[0])]
            command = step.command or [sys.executable, "-m", "day07_flash_attention.benchmark",
                                       *arguments, "--output", str(folder)]
            limit = min(step.seconds, left)
            say(f"== {step.name} (limit {limit:.0f} s): {' '.join(command)}")
            begun = time.monotonic()
            # Its own process group: a step stopped at its limit takes with it what it started
            # (the tuning's compile workers), which would otherwise compete with later steps.
            process = subprocess.Popen(command, cwd=repository, env=environment, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            try:
                code = process.wait(timeout=limit)
                entry["status"] = "ok" if code == 0 else f"failed (exit {code})"
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                entry["status"] = "timeout"
            log.flush()
            entry.update(seconds=round(time.monotonic() - begun, 1), limit_s=round(limit, 1),
                         command=command[1:])
            record.append(entry)
            say(f"== {step.name}: {entry['status']} in {entry['seconds']} s")
            save()
        say(f"== done in {time.monotonic() - started:.0f} s of a {budget_s:.0f} s budget")
    save()
    shutil.rmtree(work)  # everything is in the archive: two files come back
    _print_summary(outdir)
    return record


def _print_summary(outdir: Path) -> None:
    """What the archive says, last on the console (a device tool returns the output's end)."""
    from day07_flash_attention import report

    folder = outdir / "summary"
    try:
        report.unpack(outdir / ARCHIVE, folder)
        print(report.summary(folder), flush=True)
    except Exception as error:  # the archive is what matters; a summary is a courtesy
        print(f"no summary: {error!r}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m day07_flash_attention.gpu_run",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", type=Path, help="where the archive and the log go")
    parser.add_argument("--dry-run", action="store_true",
                        help="on a CPU: every step at interpreter size, to test the plumbing")
    parser.add_argument("--budget", type=float, help="seconds for all the steps (default: "
                        f"{BUDGET_S['gpu']:.0f} on a GPU, {BUDGET_S['dry-run']:.0f} dry)")
    args = parser.parse_args(argv)
    if args.budget is not None and not args.budget > 0:
        parser.error(f"--budget must be a positive number of seconds, got {args.budget}")
    if not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            parser.error("no CUDA device here: use --dry-run on a CPU")
    record = run(args.outdir, args.dry_run, args.budget)
    return 0 if all(entry["status"] == "ok" for entry in record) else 1


if __name__ == "__main__":
    sys.exit(main())
