"""Day 13: object detection end to end. Canvases of handwritten digits with boxes, box
operations and NMS, COCO's mAP (equal to pycocotools), a CenterNet-style detector on a
convolutional backbone and on Day 6's ViT, DETR's Hungarian matching and set loss (equal to
transformers'), and commands that train, evaluate and detect
(`python -m day13_detection.cli --help`).

The modules beside this file (`boxes.py`, `data.py`, `coco.py`, `detector.py`, `detr.py`,
`cli.py`) are generated from `day13_detection.ipynb`; edit the notebook.
"""

from .boxes import batched_nms, box_area, box_convert, box_iou, generalized_box_iou, nms
from .coco import COCO_STATS, coco_evaluate
from .data import Canvases, make_canvases
from .detector import (
    CenterNet,
    ConvBackbone,
    DetectorConfig,
    ViTBackbone,
    centernet_loss,
    decode,
    detect,
    evaluate_detector,
    load_detector,
    save_detector,
    train_detector,
)
from .detr import hungarian_match, set_loss

__all__ = [
    "COCO_STATS",
    "Canvases",
    "CenterNet",
    "ConvBackbone",
    "DetectorConfig",
    "ViTBackbone",
    "batched_nms",
    "box_area",
    "box_convert",
    "box_iou",
    "centernet_loss",
    "coco_evaluate",
    "decode",
    "detect",
    "evaluate_detector",
    "generalized_box_iou",
    "hungarian_match",
    "load_detector",
    "make_canvases",
    "nms",
    "save_detector",
    "set_loss",
    "train_detector",
]
