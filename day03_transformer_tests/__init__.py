"""Day 3: the whole Transformer (embeddings with weight sharing, masks, greedy decoding),
proven equal to PyTorch's and trained on sequence reversal.

The modules beside this file are generated from `day03_transformer_tests.ipynb`; edit the notebook.
"""

from .masks import causal_mask, pad_sequences, padding_mask, target_mask
from .model import (
    CONFIGURATIONS,
    Transformer,
    copy_into_torch_transformer,
    count_by_component,
    greedy_decode,
    parameter_breakdown,
)
from .training import (
    ReversalTask,
    exact_sequence_accuracy,
    is_stable,
    label_smoothing_loss,
    learning_rate,
    reversal_experiment,
    teacher_forced_accuracy,
    train_reversal,
)

__all__ = [
    "CONFIGURATIONS",
    "ReversalTask",
    "Transformer",
    "causal_mask",
    "copy_into_torch_transformer",
    "count_by_component",
    "exact_sequence_accuracy",
    "greedy_decode",
    "is_stable",
    "label_smoothing_loss",
    "learning_rate",
    "pad_sequences",
    "padding_mask",
    "parameter_breakdown",
    "reversal_experiment",
    "target_mask",
    "teacher_forced_accuracy",
    "train_reversal",
]
