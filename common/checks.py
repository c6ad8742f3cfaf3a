"""Argument checks with one rule for every day (CONTRIBUTING.md, "Errors users get").

- A bool is not a number: `True` is refused where a size or a rate is expected, although
  Python counts it as the int 1.
- A NumPy scalar counts as the Python number it holds: `np.int64(4)` is an int and
  `np.float32(0.25)` a float, since both come out of NumPy code all the time.
- Every error names the argument, the value it got and what was expected.

Each check returns the value converted to the plain Python type, so that callers store an
`int`, not an `np.int64`.
"""

import math
import numbers
import os
from decimal import Decimal

import torch
from torch import Tensor


def describe(value) -> str:
    """`value` as an error message shows it: its repr and type, or a tensor's shape and dtype."""
    return f"{value!r} ({type(value).__name__})" if not isinstance(value, Tensor) else (
        f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}")


def as_int(value, name: str, minimum: int | None = None) -> int:
    """`value` as an int, if it is an int or a NumPy integer (not a bool) >= `minimum`."""
    if isinstance(value, bool | Tensor) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {describe(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        wanted = {0: "a non-negative int", 1: "a positive int"}.get(minimum, f"an int >= {minimum}")
        raise ValueError(f"{name} must be {wanted}, got {value}")
    return value


def seed(value, name: str = "seed") -> int:
    """`value` as a random seed: an int from 0 to 2**32 - 1, which every generator accepts
    (and which leaves room for the offsets the training functions add to a seed)."""
    value = as_int(value, name, minimum=0)
    if value >= 2**32:
        raise ValueError(f"{name} must be an int from 0 to 2**32 - 1, got {value}")
    return value


def positive_int(value, name: str) -> int:
    """`value` as an int >= 1."""
    return as_int(value, name, minimum=1)


def non_negative_int(value, name: str) -> int:
    """`value` as an int >= 0."""
    return as_int(value, name, minimum=0)


def as_float(value, name: str, minimum: float | None = None, maximum: float | None = None,
             exclusive_minimum: bool = False, exclusive_maximum: bool = False) -> float:
    """`value` as a finite float, from an int, a float or a NumPy number (not a bool), within
    [minimum, maximum]; either end can be made exclusive."""
    if isinstance(value, bool | Tensor) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {describe(value)}")
    try:
        value = float(value)
    except OverflowError:  # an int too large for a float
        value = math.inf
    low = minimum is not None and (value <= minimum if exclusive_minimum else value < minimum)
    high = maximum is not None and (value >= maximum if exclusive_maximum else value > maximum)
    if not math.isfinite(value) or low or high:
        interval = (f"{'(' if exclusive_minimum else '['}"
                    f"{'-inf' if minimum is None else minimum}, "
                    f"{'inf' if maximum is None else maximum}"
                    f"{')' if exclusive_maximum or maximum is None else ']'}")
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return value


def positive_float(value, name: str) -> float:
    """`value` as a finite float > 0."""
    return as_float(value, name, minimum=0.0, exclusive_minimum=True)


def as_bool(value, name: str) -> bool:
    """`value` as a bool, if it is a bool or a NumPy bool (a truthy string is not one)."""
    if isinstance(value, bool):
        return value
    if type(value).__name__ == "bool" and type(value).__module__ == "numpy":  # np.bool_
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {describe(value)}")


def tensor(value, name: str, dims: int | tuple[int, ...] | None = None,
           dtypes: tuple[torch.dtype, ...] | None = None, shape: str | None = None) -> Tensor:
    """`value`, if it is a tensor with `dims` dimensions and one of `dtypes`. `shape`
    describes the expected shape in the message, for example "(batch, length)"."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    allowed = (dims,) if isinstance(dims, int) else dims
    if allowed is not None and value.dim() not in allowed:
        wanted = shape or " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(f"{name} must have shape {wanted}, got {tuple(value.shape)}")
    if dtypes is not None and value.dtype not in dtypes:
        names = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise TypeError(f"{name} has dtype {value.dtype}; expected one of {names}")
    return value


FLOATING_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def floating_tensor(value, name: str, dims: int | tuple[int, ...] | None = None,
                    shape: str | None = None) -> Tensor:
    """`value`, if it is a floating-point tensor (float16, bfloat16, float32 or float64)."""
    return tensor(value, name, dims, FLOATING_DTYPES, shape)


def same_dtype(tensors: dict[str, Tensor]) -> None:
    """All the named tensors share one dtype (no silent promotion)."""
    dtypes = {t.dtype for t in tensors.values()}
    if len(dtypes) > 1:
        found = ", ".join(f"{name}={t.dtype}" for name, t in tensors.items())
        raise TypeError(f"{', '.join(tensors)} must share one dtype, got {found}")


def like_weights(x: Tensor, weight: Tensor, owner: str, name: str = "x") -> None:
    """`x` has the dtype and device of a module's `weight`, so that nothing is silently
    promoted or moved; `owner` names the module in the message."""
    if x.dtype != weight.dtype or x.device != weight.device:
        raise TypeError(f"{name} must be {weight.dtype} on {weight.device}, like the {owner}'s "
                        f"weights, got {x.dtype} on {x.device}")


def as_callable(value, name: str):
    """`value`, if it can be called; checked before anything is run or timed."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {describe(value)}")
    return value


def model_builder(value, name: str = "build"):
    """`value` as a function that returns a new model (a class or a function), not a model."""
    if not callable(value) or isinstance(value, torch.nn.Module):
        raise TypeError(f"{name} must be a function that returns a new model, got "
                        f"{type(value).__name__}")
    return value


def values_readable(tensor: Tensor) -> bool:
    """Whether a check may read `tensor`'s values: not on the meta device (no values) and not
    while torch.compile traces (reading one would break the graph)."""
    return tensor.device.type != "meta" and not torch.compiler.is_compiling()


def built_model(value, name: str = "build"):
    """`value`, what a model builder returned, if it is a model (an nn.Module)."""
    if not isinstance(value, torch.nn.Module):
        raise TypeError(f"{name} must return a model (an nn.Module), got "
                        f"{type(value).__name__}")
    return value


def module(value, name: str, kind: type | tuple[type, ...] = torch.nn.Module):
    """`value`, if it is an instance of `kind`, a class or a tuple of classes (by default any
    nn.Module)."""
    if not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        wanted = " or ".join(k.__name__ for k in kinds)
        raise TypeError(f"{name} must be a {wanted}, got {type(value).__name__}")
    return value


def memory_limit_bytes() -> int:
    """The most memory that a call may allocate (`affordable`): the machine's physical memory
    (64 GiB where the system does not say), or a CUDA device's if larger and CUDA is in use.
    A function, so that tests can replace it."""
    try:
        limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows), or no such name
        limit = 64 * 2 ** 30
    if torch.cuda.is_initialized():  # never initialise CUDA just to ask
        limit = max([limit] + [torch.cuda.get_device_properties(i).total_memory
                               for i in range(torch.cuda.device_count())])
    return limit


def affordable(elements: int, name: str | tuple[str, ...], value,
               bytes_per_element: int = 4) -> None:
    """Refuse, before allocating, an argument that would make a call allocate more memory than
    this machine has. `elements` (a Python int of any size, so that no product overflows) of
    `bytes_per_element` bytes each is the caller's estimate of what the call allocates; the
    limit is `memory_limit_bytes()`, the physical memory, so that nothing is refused that
    could have run. Beyond it an allocation could only fail after a long wait, swap, or get
    the process killed by the system, with no error that names the argument. `name=value` is
    what the message names: `affordable(4 * dim, "dim", dim)` with dim = 10**9 raises
    ValueError("dim=1000000000 would allocate about 14.9 GiB, more than this machine's 8.0 GiB
    of memory") on a machine with 8 GiB. Where several arguments make the size, name them all
    (a tuple of names and one of values), so that the message shows which one is out of scale."""
    if torch.compiler.is_compiling():  # the machine's memory cannot be read inside a graph;
        return                          # a forward pass's estimate is checked when run eagerly
    named = (f"{name}={value!r}" if isinstance(name, str) else
             ", ".join(f"{n}={v!r}" for n, v in zip(name, value, strict=True)))
    elements = non_negative_int(elements, "elements")
    needed = elements * positive_int(bytes_per_element, "bytes_per_element")
    limit = memory_limit_bytes()
    if needed > limit:
        raise ValueError(f"{named} would allocate about {_gib(needed)} GiB, more "
                         f"than this machine's {_gib(limit)} GiB of memory")


def _gib(size: int) -> str:
    gib = Decimal(size) / 2 ** 30  # any int, however large: a float overflows beyond 1e308
    return f"{gib:,.1f}" if gib < 10 ** 6 else f"{gib:.3g}"
