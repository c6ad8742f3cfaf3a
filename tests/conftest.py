import os

import pytest
import torch

# Without CUDA, Day 7's kernels run in Triton's interpreter: the switch is read when Triton
# defines a kernel, so it is set here, before any test module imports Triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state, so a failure reproduces."""
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors and training runs: one CPU thread is faster and steadier than a pool that
    wakes for every operation on shared cores (CONTRIBUTING.md)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
