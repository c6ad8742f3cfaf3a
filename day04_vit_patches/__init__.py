"""Day 4: the Vision Transformer's input (patches, patch embedding, class token, position
embedding).

The module beside this file is generated from `day04_vit_patches.ipynb`; edit the notebook.
"""

from .patches import (
    ClassToken,
    PatchEmbedding,
    PositionEmbedding,
    as_grid,
    check_images,
    patchify,
)

__all__ = [
    "ClassToken",
    "PatchEmbedding",
    "PositionEmbedding",
    "as_grid",
    "check_images",
    "patchify",
]
