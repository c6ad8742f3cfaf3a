"""Every day's reusable layers in one import, for users and for Day 7's "apply to existing
models". No day imports this module (tests/test_dependency_direction.py keeps it so): a day
imports the earlier day it builds on, so that the lineage stays visible."""

from day01_transformer import (
    LayerNorm,
    MultiHeadAttention,
    PositionalEncoding,
    PositionwiseFeedForward,
    attention_weights_kept,
    scaled_dot_product_attention,
)
from day02_encoder_decoder import Decoder, DecoderLayer, Encoder, EncoderLayer, Generator
from day03_transformer_tests import (
    Transformer,
    causal_mask,
    greedy_decode,
    pad_sequences,
    padding_mask,
    target_mask,
)
from day04_vit_patches import ClassToken, PatchEmbedding, PositionEmbedding
from day05_vit_encoder import ViTBlock, ViTEncoder
from day06_vit_head import VIT_CONFIGS, ClassificationHead, ViT
from day07_flash_attention import (
    as_attention_function,
    flash_attention,
    standard_attention,
    tiled_attention,
)
from day08_mixture_of_experts import MixtureOfExperts, Router, SwiGLUExpert, moe_vit
from day09_mamba import MambaBlock, MambaLM, RMSNorm
from day10_serving import GPT2, GPT2Block, KVCache, PagedKVCache
from day11_distributed import Checkpointed, TensorParallelAttention, TensorParallelMLP
from day12_quantization import DynamicInt8Linear
from day13_detection import CenterNet, ConvBackbone, ViTBackbone

__all__ = [
    "VIT_CONFIGS",
    "CenterNet",
    "Checkpointed",
    "ClassToken",
    "ClassificationHead",
    "ConvBackbone",
    "Decoder",
    "DynamicInt8Linear",
    "DecoderLayer",
    "Encoder",
    "EncoderLayer",
    "GPT2",
    "GPT2Block",
    "Generator",
    "KVCache",
    "LayerNorm",
    "MambaBlock",
    "MambaLM",
    "MixtureOfExperts",
    "MultiHeadAttention",
    "PagedKVCache",
    "PatchEmbedding",
    "PositionEmbedding",
    "PositionalEncoding",
    "PositionwiseFeedForward",
    "RMSNorm",
    "Router",
    "SwiGLUExpert",
    "TensorParallelAttention",
    "TensorParallelMLP",
    "Transformer",
    "ViT",
    "ViTBackbone",
    "ViTBlock",
    "ViTEncoder",
    "as_attention_function",
    "attention_weights_kept",
    "causal_mask",
    "flash_attention",
    "greedy_decode",
    "moe_vit",
    "pad_sequences",
    "padding_mask",
    "scaled_dot_product_attention",
    "standard_attention",
    "target_mask",
    "tiled_attention",
]
