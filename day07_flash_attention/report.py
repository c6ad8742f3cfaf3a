"""Day 7's GPU results: a returned archive into `results/`, and what the notebook shows.

    python -m day07_flash_attention.report OUTDIR/gpu_run.tar.gz  # into results/, beside this
    python -m day07_flash_attention.report ARCHIVE --into FOLDER  # elsewhere

Written by hand, like `gpu_run.py`, whose archive it reads. It shows whatever is there,
complete or partial: the run's steps, the kernel's check, the measured ceilings, the ratios of
the Triton kernel to PyTorch's backends (each as a share of the measured matrix-product
ceiling), the models' training steps, the tuned tiles, and the plots, regenerated from the
JSON files. Nothing is typed in: every figure comes from a file that a run wrote.
"""
import argparse
import json
import sys
import tarfile
from pathlib import Path

from common import benchmark as bench
from day07_flash_attention.benchmark import RESULTS, save_plots

SWEEPS = ("headline", "headline-tuned", "sweep-rest")  # gpu_run's steps that run the sweep
RENAMED = {"results.json": "{step}.json", "results.csv": "{step}.csv",
           "models.json": "models.json", "models.csv": "models.csv",
           "check.json": "check.json", "environment.json": "environment.json"}


def _destination(member: str) -> str | None:
    """The flat name in results/ of an archive member gpu_run/[step/]file; None to skip it
    (plots, which are regenerated, and anything unexpected)."""
    parts = Path(member).parts
    if len(parts) == 2 and parts[1] in ("steps.json", "gpu_run.log"):
        return parts[1]
    if len(parts) != 3 or parts[0] != "gpu_run":
        return None
    step, name = parts[1], parts[2]
    if name.startswith("tiles-") and name.endswith(".json"):
        return name
    pattern = RENAMED.get(name)
    return pattern.format(step=step) if pattern else None


def unpack(archive: Path, into: Path = RESULTS) -> list[Path]:
    """Copy the archive's results into `into` under flat names, then regenerate the plots."""
    into = Path(into)
    into.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            name = _destination(member.name)
            if member.isfile() and name:  # names are ours: no path from the archive is used
                (into / name).write_bytes(tar.extractfile(member).read())
                written.append(into / name)
    if not written:
        raise ValueError(f"archive {archive} holds no results of gpu_run")
    return written + render(into)


def load(folder: Path = RESULTS) -> dict:
    """Every results file in `folder`, parsed; a missing one is absent from the dict."""
    folder, found = Path(folder), {}
    for key in ("environment", "check", "models", "steps", *SWEEPS):
        path = folder / f"{key}.json"
        if path.is_file():
            found[key] = json.loads(path.read_text())
    tiles = sorted(folder.glob("tiles-*.json"))
    if tiles:
        found["tiles"] = json.loads(tiles[0].read_text())
    return found


def sweep_rows(found: dict) -> list[dict]:
    """The rows of every sweep, the tuned kernel's as method "triton (tuned)"."""
    rows = []
    for name in SWEEPS:
        for row in found.get(name, {}).get("rows", []):
            tuned = name == "headline-tuned" and row["method"] == "triton"
            rows.append({**row, "method": "triton (tuned)"} if tuned else row)
    return rows


def render(folder: Path = RESULTS) -> list[Path]:
    """time.png and memory.png from the sweeps' JSON (one line per method)."""
    found = load(folder)
    rows = sweep_rows(found)
    if not rows:
        return []
    metadata = next(found[name]["metadata"] for name in SWEEPS if name in found)
    return save_plots(rows, metadata, folder)


def ceiling_tflops(found: dict) -> float | None:
    ceilings = found.get("environment", {}).get("ceilings") or {}
    return ceilings.get("matmul_bf16_8192_tflops")


def ratios(rows: list[dict], ceiling: float | None) -> list[dict]:
    """Per case with a Triton time: the fastest SDPA backend, Triton's speed over it and over
    the flash backend (> 1: Triton faster), and each one's TFLOP/s as a share of `ceiling`."""
    def case(row):
        return row["mode"], row["causal"], row["head_dim"], row["seq_len"]

    ok = [r for r in rows if r["status"] == "ok" and r.get("ms")]
    result = []
    for triton in [r for r in ok if r["method"].startswith("triton")]:
        backends = [r for r in ok if r["method"].startswith("sdpa_") and case(r) == case(triton)]
        if not backends:
            continue
        fastest = min(backends, key=lambda r: r["ms"])
        flash = next((r for r in backends if r["method"] == "sdpa_flash"), None)
        result.append({
            "method": triton["method"], "mode": triton["mode"], "causal": triton["causal"],
            "head_dim": triton["head_dim"], "seq_len": triton["seq_len"],
            "fastest": fastest["method"], "vs_fastest": fastest["ms"] / triton["ms"],
            "vs_flash": flash["ms"] / triton["ms"] if flash else None,
            "triton_share": triton["tflops"] / ceiling if ceiling else None,
            "fastest_share": fastest["tflops"] / ceiling if ceiling else None})
    return result


RATIO_COLUMNS = [("method", "kernel", ""), ("mode", "mode", ""), ("causal", "causal", ""),
                 ("head_dim", "d", "d"), ("seq_len", "N", "d"), ("fastest", "fastest SDPA", ""),
                 ("vs_fastest", "x fastest", ".2f"), ("vs_flash", "x sdpa_flash", ".2f"),
                 ("triton_share", "kernel/ceiling", ".0%"),
                 ("fastest_share", "fastest/ceiling", ".0%")]


def summary(folder: Path = RESULTS) -> str:
    """What the results in `folder` say, as text; says plainly when there are none."""
    found = load(folder)
    if not found:
        return ("No GPU results are committed yet: no GPU machine has run Day 7's benchmark "
                "for this repository so far.\nOn one, `python3 -m day07_flash_attention.gpu_run "
                "OUTDIR` runs everything in about 9 minutes; then `python -m "
                "day07_flash_attention.report OUTDIR/gpu_run.tar.gz` puts the results in "
                f"{Path(folder).name}/ and this cell shows them.")
    lines = []
    environment = found.get("environment") or next(
        (found[k]["metadata"] for k in SWEEPS if k in found), {})
    lines.append("device: " + ", ".join(f"{k} {environment.get(k)}" for k in (
        "device_name", "capability", "torch", "triton", "cuda") if environment.get(k)))
    if "steps" in found:
        lines.append("steps: " + ", ".join(f"{s['step']} {s['status']}"
                                          for s in found["steps"]["steps"]))
    ceilings = found.get("environment", {}).get("ceilings")
    if ceilings:
        lines.append(f"measured ceilings: bf16 matrix product "
                     f"{ceilings['matmul_bf16_8192_tflops']:.0f} TFLOP/s, copy "
                     f"{ceilings['copy_gbps_read_plus_write']:.0f} GB/s (read + write)")
    if "check" in found:
        checks = found["check"]["checks"]
        passed = sum(c["ok"] for c in checks)
        worst = max(checks, key=lambda c: c["error"] / (2 * c["torch_error"] + 1e-3))
        lines.append(f"check: {passed} of {len(checks)} passed; closest to the bound: "
                     f"{worst['dtype']} {worst['tensor']} {worst['shape']} causal="
                     f"{worst['causal']}, error {worst['error']:.2e} against PyTorch's "
                     f"{worst['torch_error']:.2e}")
    rows = sweep_rows(found)
    if rows:
        table = ratios(rows, ceiling_tflops(found))
        lines.append("Triton against PyTorch's fastest backend (> 1: Triton faster):")
        lines.append(bench.format_table(table, RATIO_COLUMNS) if table else
                     "  no case with both a Triton time and a backend's time")
    else:
        lines.append("no sweep measured yet")
    if "models" in found:
        from day07_flash_attention.model_benchmark import format_model_table

        lines.append("one training step of each model:")
        lines.append(format_model_table(found["models"]["rows"]))
    if "tiles" in found:
        lines.append(f"tuned tiles of {found['tiles']['device_name']} "
                     f"(complete: {found['tiles']['complete']}): {found['tiles']['best']}")
    return "\n".join(lines)


def show(folder: Path = RESULTS) -> None:
    """For the notebook: the summary, then the plots that are there."""
    print(summary(folder))
    for name in ("time.png", "memory.png"):
        if (Path(folder) / name).is_file():
            from IPython.display import Image, display

            display(Image(filename=str(Path(folder) / name)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m day07_flash_attention.report",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("archive", type=Path, help="gpu_run.tar.gz of a GPU run")
    parser.add_argument("--into", type=bench.output_folder_argument, default=RESULTS,
                        help=f"folder for the results (default {RESULTS})")
    args = parser.parse_args(argv)
    if not args.archive.is_file():
        parser.error(f"archive {args.archive} is not a file")
    written = unpack(args.archive, args.into)
    print(summary(args.into))
    print("wrote", ", ".join(p.name for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
