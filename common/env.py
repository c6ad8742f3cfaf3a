"""Where the code runs: seeding, device selection and Colab detection."""

import os
import random
import sys

import numpy as np
import torch

from common import checks


def in_colab() -> bool:
    """True inside Google Colab, whose runtime has imported `google.colab` before any cell."""
    return "google.colab" in sys.modules


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and every GPU) so a notebook reruns identically."""
    seed = checks.non_negative_int(seed, "seed")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ["PYTHONHASHSEED"] = str(seed)


def get_device(prefer: str | None = None) -> torch.device:
    """The best available device, or `prefer` ("cpu", "cuda", "mps") when it is available.

    Raises ValueError when `prefer` names a device this machine does not have, rather than
    silently falling back and producing numbers from a different device.
    """
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": _mps_available()}
    if prefer is not None:
        if prefer not in available:
            raise ValueError(f"prefer must be one of {sorted(available)} or None, got {prefer!r}")
        if not available[prefer]:
            raise ValueError(f"prefer={prefer!r} was asked for, but this machine has no {prefer}")
        return torch.device(prefer)
    for name in ("cuda", "mps"):
        if available[name]:
            return torch.device(name)
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())
