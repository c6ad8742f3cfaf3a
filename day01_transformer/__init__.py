"""Day 1: the Transformer's components (attention, positional encoding, layer norm, FFN).

The modules beside this file are generated from `day01_transformer.ipynb`; edit the notebook.
"""

from .attention import (
    MultiHeadAttention,
    check_mask,
    copy_into_torch_attention,
    scaled_dot_product_attention,
)
from .layers import LayerNorm, PositionalEncoding, PositionwiseFeedForward

__all__ = [
    "LayerNorm",
    "MultiHeadAttention",
    "PositionalEncoding",
    "PositionwiseFeedForward",
    "check_mask",
    "copy_into_torch_attention",
    "scaled_dot_product_attention",
]
