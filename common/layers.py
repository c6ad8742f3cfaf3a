"""Every day's reusable layers in one import, for users and for Day 7's "apply to existing
models". No day imports this module (tests/test_dependency_direction.py keeps it so): a day
imports the earlier day it builds on, so that the lineage stays visible."""

from day01_transformer import (
    LayerNorm,
    MultiHeadAttention,
    PositionalEncoding,
    PositionwiseFeedForward,
    scaled_dot_product_attention,
)

__all__ = [
    "LayerNorm",
    "MultiHeadAttention",
    "PositionalEncoding",
    "PositionwiseFeedForward",
    "scaled_dot_product_attention",
]
