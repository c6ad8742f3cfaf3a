"""Day 7: FlashAttention, from the online softmax to a Triton kernel, benchmarked.

The modules beside this file are generated from `day07_flash_attention.ipynb` (edit the
notebook), except `benchmark.py`, the benchmark's command line, written by hand.
`flash_attention.py` imports without Triton; the kernels (`kernels.py`) are imported on the
first call of `flash_attention`. `python -m day07_flash_attention.benchmark` is the benchmark,
and `benchmark_methods.py` what it compares; `proofs.py` holds what the notebook's proofs and
the tests both measure.
"""

from .flash_attention import (
    FlashAttention,
    TiledAttention,
    as_attention_function,
    attention_mask,
    causal_mask,
    check_attention_inputs,
    flash_attention,
    key_block_ranges,
    standard_attention,
    tiled_attention,
)

__all__ = [
    "FlashAttention",
    "TiledAttention",
    "as_attention_function",
    "attention_mask",
    "causal_mask",
    "check_attention_inputs",
    "flash_attention",
    "key_block_ranges",
    "standard_attention",
    "tiled_attention",
]
