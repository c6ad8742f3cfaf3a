"""Day 9's selective-copying experiment over seeds and learning rates, too large for the
notebook's two minutes: its results file is committed, and the notebook plots it, asserts
its conclusions over every seed in it, and re-runs one seed itself.

    python -m day09_mamba.copying_sweep     # the committed sweep (about 30 minutes)
    python -m day09_mamba.copying_sweep --seeds 0-1 --steps 20 --output /tmp/sweep.json

Written by hand (not generated from the notebook). Each run is `train_copying` with the
notebook's models (`COPYING_MODELS`) at a constant rate after a warm-up, evaluated after
STEPS[i] steps, on one CPU thread.
"""
import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from common import benchmark as bench
from common import checks
from common.notebooks import seeds_argument
from day09_mamba.mamba import COPYING_MODELS, delta_by_token, selective_copying, train_copying

RESULTS = Path(__file__).resolve().parent / "results" / "copying_sweep.json"
LEARNING_RATES = (3e-3, 1e-2)
STEPS = (125, 250, 500, 1000, 2000)


def sweep(seeds, learning_rates=LEARNING_RATES, steps=STEPS, models=None,
          progress: bool = True) -> dict:
    """{"setting", "environment", "runs"}: one run per model, seed and learning rate, each
    with its learning curve {step: token accuracy} at `steps`; a Mamba run also with each
    layer's delta on data tokens over delta on noise tokens, channel by channel."""
    models = list(COPYING_MODELS) if models is None else list(models)
    unknown = [name for name in models if name not in COPYING_MODELS]
    if unknown or not models:
        raise ValueError(f"models must be names from {list(COPYING_MODELS)}, got {models}")
    seeds = [checks.non_negative_int(seed, "seeds") for seed in seeds]
    learning_rates = [checks.positive_float(rate, "learning_rates") for rate in learning_rates]
    for name, values in (("seeds", seeds), ("learning_rates", learning_rates),
                         ("models", models)):
        if len(set(values)) < len(values):  # a repeat would count twice in every statistic
            raise ValueError(f"{name} must be distinct, got {list(values)}")
    steps = sorted({checks.positive_int(step, "steps") for step in steps})
    if not seeds or not learning_rates or not steps:
        raise ValueError("seeds, learning_rates and steps must each name at least one value")
    # The sequences on which the trained models' delta is read (none of them trained on).
    probe = selective_copying(256, generator=torch.Generator().manual_seed(20_000),
                              length=30, memorize=2)[0]
    runs = []
    work = [(rate, seed, name) for rate in learning_rates for seed in seeds for name in models]
    for rate, seed, name in tqdm(work, desc="copying sweep", unit="run", disable=not progress):
        run = train_copying(COPYING_MODELS[name], steps=steps[-1], learning_rate=rate,
                            seed=seed, evaluate_at=steps)
        row = {"model": name, "seed": seed, "learning_rate": rate,
               "parameters": sum(p.numel() for p in run.model.parameters()),
               "curve": {str(step): accuracy for step, accuracy in run.curve.items()}}
        if name == "Mamba":  # does the trained model select through delta?
            row["delta_data_over_noise"] = [
                (means[0] / means[1]).tolist() for means in delta_by_token(run.model, probe)]
        runs.append(row)
    return {"setting": {"steps": steps, "learning_rates": list(learning_rates),
                        "seeds": list(seeds), "models": models, "threads": 1},
            "environment": bench.environment("cpu"), "runs": runs}


def learning_rate_argument(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"learning rates must be numbers in (0, 1), got {text!r}")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m day09_mamba.copying_sweep",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=seeds_argument, default=tuple(range(10)),
                        help="seeds, e.g. 0-9 (default) or 0,3,5")
    parser.add_argument("--learning-rates", type=learning_rate_argument, nargs="+",
                        default=LEARNING_RATES)
    parser.add_argument("--steps", type=bench.positive_int_argument, nargs="+", default=STEPS,
                        help="where to evaluate; the runs train to the largest")
    parser.add_argument("--models", nargs="+", choices=list(COPYING_MODELS),
                        default=list(COPYING_MODELS))
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    try:  # before half an hour of training, not after
        args.output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.error(f"--output: cannot make the folder {args.output.parent}: {error}")
    if args.output.is_dir():
        parser.error(f"--output must be a file path, got the folder {args.output}")
    probe = args.output.with_name(args.output.name + ".partial")
    try:  # can the file be written there at all?
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        parser.error(f"--output: cannot write {args.output}: {error}")
    torch.set_num_threads(1)  # small tensors: one thread is faster and steadier
    try:
        results = sweep(args.seeds, args.learning_rates, args.steps, args.models)
    except ValueError as error:  # repeated values, named before any training
        parser.error(str(error))
    bench.write_json(args.output, results)
    print(f"wrote {len(results['runs'])} runs to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
