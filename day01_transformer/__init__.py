"""Day 1: the Transformer's components (attention, positional encoding, layer norm, FFN).

The modules beside this file are generated from `day01_transformer.ipynb`; edit the notebook.
"""

from .attention import (
    AttentionFunction,
    MultiHeadAttention,
    attention_weights_kept,
    causal_mask,
    check_key_padding_mask,
    check_mask,
    copy_into_torch_attention,
    dense_mask,
    scaled_dot_product_attention,
)
from .layers import LayerNorm, PositionalEncoding, PositionwiseFeedForward

__all__ = [
    "AttentionFunction",
    "LayerNorm",
    "MultiHeadAttention",
    "PositionalEncoding",
    "PositionwiseFeedForward",
    "attention_weights_kept",
    "causal_mask",
    "check_key_padding_mask",
    "check_mask",
    "copy_into_torch_attention",
    "dense_mask",
    "scaled_dot_product_attention",
]
