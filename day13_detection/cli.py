"""Day 13's commands: train a detector, evaluate a checkpoint, write a test canvas, and
detect digits in a PNG. `python -m day13_detection.cli --help`.

Written by hand, beside the modules generated from the notebook (CONTRIBUTING.md: what the
notebook does not teach, argument parsing and the files written, stays out of it).
"""
import argparse
import time
from pathlib import Path

import torch
from PIL import Image

from common import checks
from day13_detection import detector
from day13_detection.data import NOISE, make_canvases


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m day13_detection.cli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a detector and save a checkpoint")
    train.add_argument("--backbone", choices=("conv", "vit"), default="conv")
    train.add_argument("--steps", type=int, default=300)
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--learning-rate", type=float, default=5e-3)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--canvases", type=int, default=2000, help="training canvases")
    train.add_argument("--out", type=Path, required=True, help="the checkpoint to write")
    evaluate = commands.add_parser("evaluate", help="COCO's statistics on test canvases")
    evaluate.add_argument("checkpoint", type=Path)
    evaluate.add_argument("--canvases", type=int, default=500)
    evaluate.add_argument("--seed", type=int, default=1)
    canvas = commands.add_parser("canvas", help="write a test canvas as a PNG")
    canvas.add_argument("out", type=Path)
    canvas.add_argument("--seed", type=int, default=7)
    find = commands.add_parser("detect", help="draw the detections of a PNG into a PNG")
    find.add_argument("checkpoint", type=Path)
    find.add_argument("image", type=Path)
    find.add_argument("--out", type=Path, required=True)
    find.add_argument("--min-score", type=float, default=0.3)
    options = parser.parse_args(argv)
    try:
        run(options)
    except (ValueError, TypeError, FileNotFoundError, FloatingPointError) as error:
        parser.error(str(error))


def png_path(path: Path, name: str) -> Path:
    """`path`, if it names a .png file in an existing folder."""
    if path.suffix.lower() != ".png" or path.is_dir() or not path.parent.is_dir():
        raise ValueError(f"{name} must name a .png file in an existing folder, got {path}")
    return path


def run(options: argparse.Namespace) -> None:
    if options.command == "train":
        detector.checkpoint_path(options.out)  # a bad --out is refused before training
        canvases = make_canvases(options.canvases, "train", seed=0, noise=NOISE)
        started = time.perf_counter()
        trained = detector.train_detector(detector.DetectorConfig(options.backbone), canvases,
                                          options.steps, options.batch_size,
                                          options.learning_rate, options.seed, progress=True)
        print(f"trained {options.steps} steps in {time.perf_counter() - started:.1f} s, "
              f"last loss {trained.losses[-1]:.3f}")
        print(f"wrote {detector.save_detector(trained.model, options.out)}")
    elif options.command == "evaluate":
        model = detector.load_detector(options.checkpoint)
        canvases = make_canvases(options.canvases, "test", seed=options.seed, noise=NOISE)
        for name, value in detector.evaluate_detector(model, canvases).items():
            print(f"{name:10} {value:.3f}")
    elif options.command == "canvas":
        png_path(options.out, "out")
        canvas = make_canvases(1, "test", seed=options.seed, noise=NOISE)
        grey = (canvas.images[0, 0] * 255).round().to(torch.uint8).numpy()
        Image.fromarray(grey).save(options.out)
        boxes, labels = canvas.targets[0]["boxes"].tolist(), canvas.targets[0]["labels"].tolist()
        found = ", ".join(f"{label} at {box}" for box, label in zip(boxes, labels, strict=True))
        print(f"wrote {options.out}: {found}")
    else:
        model = detector.load_detector(options.checkpoint)
        min_score = checks.as_float(options.min_score, "--min-score", 0.0, 1.0)
        image = detector.read_png(options.image, model.config.image_size)
        png_path(options.out, "--out")
        started = time.perf_counter()
        found = detector.detect(model, image, min_score=min_score)[0]
        milliseconds = 1000 * (time.perf_counter() - started)
        detector.draw_detections(image[0], found, min_score).save(options.out)
        for box, score, label in zip(found["boxes"].tolist(), found["scores"].tolist(),
                                     found["labels"].tolist(), strict=True):
            print(f"{label} {score:.2f} at [{', '.join(f'{v:.1f}' for v in box)}]")
        print(f"{len(found['labels'])} detections in {milliseconds:.1f} ms; wrote {options.out}")


if __name__ == "__main__" and globals().get("__spec__") is not None:
    main()
