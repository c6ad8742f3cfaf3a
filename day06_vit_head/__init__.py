"""Day 6: the whole Vision Transformer (classification head, named sizes, parameter counts,
proofs against Hugging Face) and its training on scikit-learn's digits.

The modules beside this file are generated from `day06_vit_head.ipynb`; edit the notebook.
"""

from .training import DIGITS_VIT, DigitsRun, accuracy, load_digits_split, train_digits
from .vit import (
    VIT_CONFIGS,
    ClassificationHead,
    ViT,
    attention_rollout,
    copy_into_hugging_face,
    hugging_face_config,
    parameter_counts,
)

__all__ = [
    "DIGITS_VIT",
    "VIT_CONFIGS",
    "ClassificationHead",
    "DigitsRun",
    "ViT",
    "accuracy",
    "attention_rollout",
    "copy_into_hugging_face",
    "hugging_face_config",
    "load_digits_split",
    "parameter_counts",
    "train_digits",
]
