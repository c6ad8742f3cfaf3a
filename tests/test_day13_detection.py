"""Day 13 on inputs, seeds and settings the notebook does not run: box operations against
transformers, NMS against a plain loop, the COCO evaluator against pycocotools, the matcher
and set loss against transformers, the detector's round trip and training, the commands, and
the errors bad inputs get."""

import contextlib
import io
import subprocess
import sys

import pytest
import torch
from torch.testing import assert_close

from common.notebooks import REPOSITORY_ROOT
from common.testing import assert_error_names
from day13_detection import (
    DetectorConfig,
    batched_nms,
    box_convert,
    box_iou,
    coco_evaluate,
    decode,
    detect,
    generalized_box_iou,
    hungarian_match,
    load_detector,
    make_canvases,
    nms,
    save_detector,
    set_loss,
    train_detector,
)
from day13_detection.coco import pycocotools_stats
from day13_detection.detector import (
    CenterNet,
    centernet_loss,
    centernet_targets,
    draw_detections,
    perfect_outputs,
    read_png,
)


def random_boxes(count, generator, size=64.0, dtype=torch.float64):
    corners = torch.rand(count, 2, 2, generator=generator, dtype=dtype) * size
    return torch.cat([corners.min(1).values, corners.max(1).values], dim=1)


def hf():
    from transformers.loss import loss_for_object_detection

    return loss_for_object_detection


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_box_operations_equal_transformers_on_other_boxes(seed):
    generator = torch.Generator().manual_seed(seed)
    a, b = random_boxes(30, generator, size=500.0), random_boxes(17, generator, size=500.0)
    theirs, _ = hf().box_iou(a, b)
    assert_close(box_iou(a, b), theirs, rtol=0, atol=1e-15)
    assert_close(generalized_box_iou(a, b), hf().generalized_box_iou(a, b), rtol=0, atol=1e-15)
    assert_close(hf().center_to_corners_format(box_convert(a, "xyxy", "cxcywh")), a,
                 rtol=0, atol=1e-12)


def textbook_nms(boxes, scores, threshold):
    order = sorted(range(len(boxes)), key=lambda i: -float(scores[i]))
    kept = []
    for i in order:
        if all(box_iou(boxes[i:i + 1], boxes[j:j + 1]).item() <= threshold for j in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize("seed", [31, 32, 33, 34])
def test_nms_equals_a_plain_loop_on_other_boxes(seed):
    generator = torch.Generator().manual_seed(seed)
    boxes = random_boxes(40, generator, size=30.0)
    scores = torch.randint(6, (40,), generator=generator).float()  # ties
    for threshold in (0.0, 0.25, 0.5, 0.8):
        assert nms(boxes, scores, threshold).tolist() == textbook_nms(boxes, scores, threshold)
    labels = torch.randint(2, (40,), generator=generator)
    expected = []
    for label in (0, 1):
        where = (labels == label).nonzero()[:, 0]
        expected += where[textbook_nms(boxes[where], scores[where], 0.5)].tolist()
    assert sorted(batched_nms(boxes, scores, labels, 0.5).tolist()) == sorted(expected)


def noisy_detections(targets, generator, extra=3, drop_class=None):
    detections = []
    for target in targets:
        boxes = target["boxes"] + torch.randn(len(target["boxes"]), 4, generator=generator) * 2
        boxes = torch.cat([boxes[:, :2].minimum(boxes[:, 2:]),
                           boxes[:, :2].maximum(boxes[:, 2:])], 1)
        boxes = torch.cat([boxes, random_boxes(extra, generator, dtype=torch.float32)])
        labels = torch.cat([target["labels"], torch.randint(10, (extra,), generator=generator)])
        scores = torch.rand(len(labels), generator=generator)
        scores[:1] = 0.5  # ties across images
        keep = labels != drop_class if drop_class is not None else torch.ones_like(labels).bool()
        detections.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
    return detections


@pytest.mark.parametrize("seed", [41, 42])
def test_coco_evaluation_equals_pycocotools_on_other_canvases_and_sizes(seed):
    # canvases of 160 pixels with digits up to 120: small, medium and large objects, and a
    # class with true boxes but no detection anywhere
    canvases = make_canvases(60, "test", seed=seed, size=160, digit_sizes=(20, 120),
                             max_overlap=0.5)
    generator = torch.Generator().manual_seed(seed)
    detections = noisy_detections(canvases.targets, generator, drop_class=3)
    ours = coco_evaluate(detections, canvases.targets, 10)
    theirs = pycocotools_stats(detections, canvases.targets, 10)
    assert_close(torch.tensor(list(ours.values())), torch.tensor(list(theirs.values())),
                 rtol=0, atol=1e-12)
    assert ours["AP_medium"] > -1 and ours["AP_large"] > -1


def test_coco_evaluation_of_no_detections_is_zero_and_of_no_truth_minus_one():
    canvases = make_canvases(5, "test", seed=3)
    empty = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
              "labels": torch.zeros(0, dtype=torch.int64)} for _ in range(5)]
    stats = coco_evaluate(empty, canvases.targets, 10)
    assert stats["AP"] == 0 and stats["AR100"] == 0 and stats["AP_large"] == -1
    no_truth = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 5
    assert set(coco_evaluate(empty, no_truth, 10).values()) == {-1.0}


@pytest.mark.parametrize("seed", [51, 52])
def test_matching_and_set_loss_equal_transformers_on_other_predictions(seed):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 7, 5, generator=generator, dtype=torch.float64)
    boxes = torch.sigmoid(torch.randn(6, 7, 4, generator=generator, dtype=torch.float64))
    targets = []
    for count in (0, 1, 3, 7, 2, 5):  # as many objects as queries, and none
        centres = torch.rand(count, 2, generator=generator, dtype=torch.float64) * 0.6 + 0.2
        sizes = torch.rand(count, 2, generator=generator, dtype=torch.float64) * 0.3 + 0.05
        targets.append({"labels": torch.randint(4, (count,), generator=generator),
                        "boxes": torch.cat([centres, sizes], 1)})
    theirs_in = [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets]
    outputs = {"logits": logits, "pred_boxes": boxes}
    matcher = hf().HungarianMatcher(class_cost=2, bbox_cost=3, giou_cost=1)
    ours = hungarian_match(logits, boxes, targets, class_weight=2, l1_weight=3, giou_weight=1)
    for (a, b), (c, d) in zip(ours, matcher(outputs, theirs_in), strict=True):
        assert torch.equal(a, c) and torch.equal(b, d)
    criterion = hf().ImageLoss(matcher, num_classes=4, eos_coef=0.25,
                               losses=["labels", "boxes"]).double()
    their_loss = criterion(outputs, theirs_in)
    our_loss = set_loss(logits, boxes, targets, ours, no_object_weight=0.25)
    for mine, name in (("classes", "loss_ce"), ("l1", "loss_bbox"), ("giou", "loss_giou")):
        assert_close(our_loss[mine], their_loss[name], rtol=1e-12, atol=0)


def test_decoding_the_targets_of_other_canvases_recovers_every_box():
    canvases = make_canvases(100, "train", seed=61, size=96)
    outputs = perfect_outputs(canvases.targets, 10, (96 // 4, 96 // 4))
    stats = coco_evaluate(decode(outputs), canvases.targets, 10)
    assert stats["AP"] == 1.0 and stats["AR100"] == 1.0


def test_a_short_training_lowers_the_loss_and_a_checkpoint_gives_the_same_detections(tmp_path):
    canvases = make_canvases(200, "train", seed=71, noise=0.2)
    for backbone in ("conv", "vit"):
        trained = train_detector(DetectorConfig(backbone), canvases, steps=40, seed=7)
        assert sum(trained.losses[-10:]) < sum(trained.losses[:10])
        path = save_detector(trained.model, tmp_path / f"{backbone}.pt")
        again = load_detector(path)
        images = canvases.images[:4]
        for a, b in zip(detect(trained.model, images), detect(again, images), strict=True):
            assert all(torch.equal(a[key], b[key]) for key in a)


def test_the_commands_train_evaluate_write_a_canvas_and_detect(tmp_path):
    def run(*arguments):
        return subprocess.run([sys.executable, "-m", "day13_detection.cli", *map(str, arguments)],
                              capture_output=True, text=True, cwd=REPOSITORY_ROOT, timeout=300)

    checkpoint, canvas, out = tmp_path / "d.pt", tmp_path / "c.png", tmp_path / "b.png"
    trained = run("train", "--steps", "20", "--canvases", "100", "--out", checkpoint)
    assert trained.returncode == 0 and checkpoint.is_file(), trained.stderr
    evaluated = run("evaluate", checkpoint, "--canvases", "20")
    assert evaluated.returncode == 0 and evaluated.stdout.splitlines()[0].startswith("AP ")
    assert run("canvas", canvas, "--seed", "3").returncode == 0
    detected = run("detect", checkpoint, canvas, "--out", out, "--min-score", "0.0")
    assert detected.returncode == 0 and "detections in" in detected.stdout, detected.stderr
    assert read_png(out, 256).shape == (1, 1, 256, 256)  # drawn four times larger
    missing = run("detect", tmp_path / "none.pt", canvas, "--out", out)
    assert missing.returncode == 2 and "no checkpoint at" in missing.stderr
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    bad = run("evaluate", tmp_path / "bad.pt")
    assert bad.returncode == 2 and "is not a checkpoint written by save_detector" in bad.stderr


def test_bad_inputs_get_errors_that_name_them():
    boxes = torch.tensor([[0.0, 0, 10, 10]])
    assert_error_names(lambda: box_iou(torch.tensor([[5.0, 0, 1, 1]]), boxes), ["a[0]", "x2 >= x1"])
    assert_error_names(lambda: box_iou(torch.tensor([[0.0, 0, 1, float("nan")]]), boxes),
                       ["a", "NaN"])
    assert_error_names(lambda: box_iou(torch.zeros(3, 5), boxes), ["a", "(N, 4)"])
    assert_error_names(lambda: box_convert(boxes, "xyxy", "yxyx"), ["target", "cxcywh"])
    assert_error_names(lambda: nms(boxes, torch.zeros(2), 0.5), ["scores", "one score per box"])
    assert_error_names(lambda: nms(boxes, torch.zeros(1), 1.5), ["iou_threshold"])
    assert_error_names(lambda: make_canvases(0), ["count"])
    assert_error_names(lambda: make_canvases(2, "validation"), ["split", "train"])
    assert_error_names(lambda: make_canvases(2, digit_sizes=(4, 20)), ["digit_sizes"])
    assert_error_names(lambda: make_canvases(2, size=32, digit_sizes=(12, 40)), ["digit_sizes"])
    assert_error_names(lambda: make_canvases(2, noise=-0.1), ["noise"])
    model = CenterNet()
    assert_error_names(lambda: model(torch.zeros(1, 1, 64, 64, dtype=torch.uint8)),
                       ["images", "uint8"], TypeError)
    assert_error_names(lambda: model(torch.zeros(1, 1, 0, 0)), ["images", "(batch, 1, H, W)"])
    assert_error_names(lambda: model(torch.zeros(1, 1, 32, 32)), ["64x64", "image_size"])
    assert_error_names(lambda: detect(model, torch.full((1, 1, 64, 64), float("nan"))), ["NaN"])
    assert detect(model, torch.zeros(0, 1, 64, 64)) == []
    assert_error_names(lambda: CenterNet(DetectorConfig("resnet")), ["config.backbone"])
    assert_error_names(lambda: coco_evaluate([{"boxes": boxes}], [{"boxes": boxes}], 10),
                       ["detections[0]", "scores"])
    detections = [{"boxes": boxes, "scores": torch.ones(1), "labels": torch.zeros(1).long()}]
    targets = [{"boxes": boxes, "labels": torch.zeros(1).long()}]
    assert_error_names(lambda: coco_evaluate(detections, targets * 2, 10), ["same images"])
    assert_error_names(lambda: hungarian_match(torch.zeros(1, 3, 4), torch.zeros(1, 3, 4),
                                               [{"labels": torch.tensor([3]),
                                                 "boxes": torch.zeros(1, 4)}]),
                       ["targets[0]['labels']", "0..2"])
    assert_error_names(lambda: train_detector(DetectorConfig(), [1, 2]), ["canvases"], TypeError)
    assert_error_names(lambda: load_detector("/nonexistent/detector.pt"),
                       ["no checkpoint at"], FileNotFoundError)
    assert_error_names(lambda: draw_detections(torch.zeros(64, 64), detections[0]),
                       ["image", "(1, H, W)"])
    # a helper's misuse round (the closing note of issue 25): each once silent or unclear
    assert_error_names(lambda: make_canvases(2, max_digits=10**6), ["max_digits"])
    assert_error_names(lambda: make_canvases(2, digit_sizes=16), ["digit_sizes", "pair"])
    canvases = make_canvases(3, seed=1)
    assert_error_names(lambda: canvases.subset([0.7, 1.2]), ["indices", "ints"], TypeError)
    assert_error_names(lambda: canvases.subset([5]), ["indices", "0..2"])
    half = torch.tensor([[0.0, 0, 300, 300]], dtype=torch.float16)
    assert box_iou(half, half).item() == 1.0  # computed in float32: no overflow to inf
    assert generalized_box_iou(half, half).item() == 1.0
    assert_error_names(lambda: batched_nms(torch.zeros(0, 4), torch.zeros(3),
                                           torch.zeros(0, dtype=torch.int64), 0.5), ["scores"])
    wrong_label = [{"boxes": boxes, "labels": torch.tensor([15])}]
    assert_error_names(lambda: coco_evaluate(detections, wrong_label, 10),
                       ["targets[0]['labels']", "0..9"])
    nan_score = [dict(detections[0], scores=torch.tensor([float("nan")]))]
    assert_error_names(lambda: coco_evaluate(nan_score, targets, 10), ["scores", "NaN"])
    assert_error_names(lambda: CenterNet(DetectorConfig(image_size=-5)), ["config.image_size"])
    assert_error_names(lambda: CenterNet(DetectorConfig("vit", width=1)), ["config.width"])
    assert_error_names(lambda: CenterNet(prior=0.0), ["prior"])
    assert_error_names(lambda: model(torch.zeros(1, 1, 64, 64, dtype=torch.float64)),
                       ["images", "float32"], TypeError)
    assert_error_names(lambda: centernet_targets(wrong_label, 10, (16, 16)), ["labels", "0..9"])
    outside = [{"boxes": torch.tensor([[70.0, 0, 90, 10]]), "labels": torch.tensor([1])}]
    assert_error_names(lambda: centernet_targets(outside, 10, (16, 16)), ["centre", "grid"])
    assert_error_names(lambda: centernet_loss(model(torch.zeros(2, 1, 64, 64)), targets),
                       ["targets", "one dict per image"])
    assert_error_names(lambda: decode({"heatmap": torch.zeros(1, 10, 4, 4)}), ["outputs", "size"])
    assert_error_names(lambda: detect(None, torch.zeros(1, 1, 64, 64)), ["model"], TypeError)
    noisy = make_canvases(3, seed=2)
    noisy.images[0, 0, 0, 0] = float("nan")
    assert_error_names(lambda: train_detector(DetectorConfig(), noisy, steps=1),
                       ["canvases.images", "NaN"])
    assert_error_names(lambda: train_detector(DetectorConfig(num_classes=5), canvases, steps=1),
                       ["canvases.targets", "labels"])
    assert_error_names(lambda: save_detector(model, "/nonexistent/folder/d.pt"), ["path"])
    assert_error_names(lambda: hungarian_match(torch.zeros(1, 2, 4), torch.full((1, 2, 4), 0.5),
                                               [{"labels": torch.tensor([0, 1, 2]),
                                                 "boxes": torch.full((3, 4), 0.2)}]),
                       ["3 objects", "2 queries"])
    one_object = [{"labels": torch.tensor([0]), "boxes": torch.full((1, 4), 0.2)}]
    assert_error_names(lambda: set_loss(torch.zeros(1, 2, 4), torch.full((1, 2, 4), 0.5),
                                        one_object, [(torch.tensor([9]), torch.tensor([0]))]),
                       ["matches[0]"])
    assert_error_names(lambda: draw_detections(torch.zeros(3, 64, 64), detections[0]),
                       ["image", "(1, H, W)"])
    loss = centernet_loss(model(torch.zeros(2, 1, 64, 64)), [
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2)
    assert torch.isfinite(loss["loss"])  # no object in the batch: a defined loss, not NaN
    with contextlib.redirect_stderr(io.StringIO()):
        from day13_detection import cli

        with pytest.raises(SystemExit):
            cli.main(["detect"])
