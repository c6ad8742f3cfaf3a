"""Day 9: Mamba, the selective state-space model (discretisation, three scans, the block, a
small language model), proven equal to Hugging Face's MambaMixer and MambaForCausalLM, and
raced against attention.

The module beside this file is generated from `day09_mamba.ipynb`; edit the notebook.
"""

from .mamba import (
    MARKER,
    NOISE,
    SCANS,
    CopyingRun,
    MambaBlock,
    MambaLayer,
    MambaLM,
    MambaState,
    RMSNorm,
    TransformerLM,
    associative_scan,
    convolution_kernel,
    discretize,
    hugging_face_lm,
    hugging_face_mixer,
    selective_copying,
    sequential_scan,
    ssd_matrix_form,
    train_copying,
)

__all__ = [
    "MARKER",
    "NOISE",
    "SCANS",
    "CopyingRun",
    "MambaBlock",
    "MambaLM",
    "MambaLayer",
    "MambaState",
    "RMSNorm",
    "TransformerLM",
    "associative_scan",
    "convolution_kernel",
    "discretize",
    "hugging_face_lm",
    "hugging_face_mixer",
    "selective_copying",
    "sequential_scan",
    "ssd_matrix_form",
    "train_copying",
]
