"""Day 5: the Vision Transformer's encoder (pre-norm blocks with exact-GELU MLPs).

The module beside this file is generated from `day05_vit_encoder.ipynb`; edit the notebook.
"""

from .encoder import ViTBlock, ViTEncoder

__all__ = ["ViTBlock", "ViTEncoder"]
