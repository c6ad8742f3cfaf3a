"""Day 10: serving a language model. GPT-2 built from Days 1-3's pieces and proven equal to
Hugging Face's GPT2LMHeadModel, a small language to serve, temperature, top-k and top-p
sampling and the key-value cache proven equal to transformers' generation, a paged cache
and continuous batching, speculative decoding, and an HTTP server (`server.py`:
`python -m day10_serving.server`).

The modules beside this file (`serving.py`, `server.py`) are generated from
`day10_serving.ipynb`; edit the notebook.
"""

from .serving import (
    ALPHABET,
    GPT2,
    Engine,
    GPT2Block,
    KVCache,
    PagedBatch,
    PagedKVCache,
    Request,
    Sampling,
    SpeculationStats,
    cache_bytes_per_token,
    decode,
    encode,
    filtered_logits,
    generate,
    hugging_face_gpt2,
    is_grammatical,
    language_model_loss,
    load_checkpoint,
    next_tokens,
    save_checkpoint,
    sentences,
    speculative_generate,
    train_language_model,
)

__all__ = [
    "ALPHABET",
    "GPT2",
    "Engine",
    "GPT2Block",
    "KVCache",
    "PagedBatch",
    "PagedKVCache",
    "Request",
    "Sampling",
    "SpeculationStats",
    "cache_bytes_per_token",
    "decode",
    "encode",
    "filtered_logits",
    "generate",
    "hugging_face_gpt2",
    "is_grammatical",
    "language_model_loss",
    "load_checkpoint",
    "next_tokens",
    "save_checkpoint",
    "sentences",
    "speculative_generate",
    "train_language_model",
]
