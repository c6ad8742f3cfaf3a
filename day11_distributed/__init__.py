"""Day 11: training across processes with torch.distributed. A launcher that never hangs,
the collectives and a ring all-reduce by hand, data parallelism by hand and with DDP, ZeRO
and FSDP2, Megatron-LM's tensor parallelism, a GPipe pipeline, activation checkpointing,
and Day 6's ViT trained with DDP and FSDP2 (`python -m day11_distributed.train`).

The modules beside this file (`parallel.py`, `train.py`) are generated from
`day11_distributed.ipynb`; edit the notebook.
"""

from .parallel import (
    STRATEGIES,
    Checkpointed,
    TensorParallelAttention,
    TensorParallelMLP,
    average_gradients,
    digits_mlp,
    gpipe_step,
    gpipe_timeline,
    launch,
    rank_and_size,
    ring_all_reduce,
    shard,
    split_stages,
    train_steps,
)

__all__ = [
    "STRATEGIES",
    "Checkpointed",
    "TensorParallelAttention",
    "TensorParallelMLP",
    "average_gradients",
    "digits_mlp",
    "gpipe_step",
    "gpipe_timeline",
    "launch",
    "rank_and_size",
    "ring_all_reduce",
    "shard",
    "split_stages",
    "train_steps",
]
