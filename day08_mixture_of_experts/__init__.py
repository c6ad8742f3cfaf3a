"""Day 8: Mixture of Experts (router, experts, two dispatches, capacity, auxiliary losses),
proven equal to Hugging Face's Mixtral and Qwen2-MoE blocks, and an MoE Vision Transformer.

The modules beside this file (`moe.py`, and `proofs.py` for what the notebook and the tests both
compute) are generated from `day08_mixture_of_experts.ipynb`; edit the
notebook.
"""

from .moe import (
    MixtureOfExperts,
    MoERun,
    Router,
    Routing,
    SwiGLUExpert,
    auxiliary_loss,
    expert_capacity,
    expert_share,
    gathered_dispatch,
    hugging_face_twin,
    load_balancing_loss,
    make_expert,
    moe_layers,
    moe_vit,
    mutual_information,
    naive_dispatch,
    parameter_counts,
    router_z_loss,
    share_entropy,
    sorted_dispatch,
    train_moe_digits,
)

__all__ = [
    "MixtureOfExperts",
    "MoERun",
    "Router",
    "Routing",
    "SwiGLUExpert",
    "auxiliary_loss",
    "expert_capacity",
    "expert_share",
    "gathered_dispatch",
    "hugging_face_twin",
    "load_balancing_loss",
    "make_expert",
    "moe_layers",
    "moe_vit",
    "mutual_information",
    "naive_dispatch",
    "parameter_counts",
    "router_z_loss",
    "share_entropy",
    "sorted_dispatch",
    "train_moe_digits",
]
