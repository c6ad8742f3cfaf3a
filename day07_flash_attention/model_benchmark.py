"""One training step (forward, backward, optimizer step) of Day 3's Transformer and Day 6's
ViT, each with standard attention and with flash attention: time, peak memory, and the loss
of the first step, which shows that both attentions compute the same model.

Written by hand, not generated: like `benchmark.py`, this is measuring engineering that the
notebook does not teach. The measuring itself (timing with its spread, peak memory,
out-of-memory rows, the table) is `common.benchmark`'s.

On CUDA the step runs under `torch.autocast("cuda", dtype=torch.bfloat16)`; on a CPU in
float32 without autocast, since Triton's interpreter, which runs the flash kernels there,
refuses bfloat16.
"""
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch.nn import functional as F

from common import benchmark as bench
from day03_transformer_tests import Transformer, label_smoothing_loss, padding_mask
from day06_vit_head import VIT_CONFIGS, ViT
from day07_flash_attention import as_attention_function

DEVICES, ATTENTIONS = ("cuda", "cpu"), ("standard", "flash")
PAD = 0  # Day 3's padding id; the random tokens are drawn from 1, 2, ...

# No dropout: both attentions then compute the same loss from the same weights and batch.
# GPU sizes, estimated for standard attention under autocast: each attention keeps for the
# backward about 6 bytes per score (B*H*N^2 of them): the float32 softmax output and its
# bfloat16 copy for the product with V (measured in float32 on a CPU: 8.8 bytes, masks
# included). Beyond that: the activations (~58 bytes per token and d_model per layer in
# float32, measured), the temporaries of the attention running (~10 bytes per score) and the
# weights, gradients and Adam's moments (16 bytes per parameter).
# - Transformer, batch 2: 2*8*4096^2 = 268M scores per attention, 3 attentions (encoder self,
#   decoder self, cross) in each of 6 layers: 18 * 268M * 6 B = 29 GB, ~37 GB at the peak.
#   Batch 4 would come near 75 GB.
# - ViT-B/16 at 512 px, batch 32: 32*12*1025^2 = 403M scores per attention, 12 layers:
#   29 GB, plus ~15 GB of activations (32*1025*768 = 25M per tensor): ~50 GB at the peak.
# Both fit easily in an H200 (141 GB); flash attention keeps no scores.
MODEL_SIZES: dict[str, dict[str, dict]] = {
    "gpu": {
        "transformer": {"batch": 2, "tokens": 4096, "model": dict(
            source_vocab_size=1000, target_vocab_size=1000, num_layers=6, d_model=512,
            num_heads=8, d_ff=2048, dropout=0.0)},
        "vit": {"batch": 32, "model": dict(  # ViT-B/16: (512/16)^2 = 1024 patches + 1
            image_size=512, num_classes=1000, dropout=0.0, **VIT_CONFIGS["B/16"])},
    },
    "tiny": {  # for tests on a CPU, where the flash kernels run in Triton's interpreter
        "transformer": {"batch": 2, "tokens": 16, "model": dict(
            source_vocab_size=16, target_vocab_size=16, num_layers=2, d_model=32,
            num_heads=2, d_ff=64, dropout=0.0)},
        "vit": {"batch": 2, "model": dict(  # (32/8)^2 = 16 patches + 1
            image_size=32, patch_size=8, num_classes=10, d_model=32, num_layers=2,
            num_heads=2, d_mlp=64, dropout=0.0)},
    },
}
MODELS = tuple(MODEL_SIZES["gpu"])


def sequence_length(model: str, spec: dict) -> int:
    """The tokens each attention sees: the Transformer's source (and target) length; the
    ViT's patches plus the class token."""
    if model == "transformer":
        return spec["tokens"]
    return (spec["model"]["image_size"] // spec["model"]["patch_size"]) ** 2 + 1


def build_model(model: str, spec: dict, attention: str) -> torch.nn.Module:
    kind = Transformer if model == "transformer" else ViT
    if attention == "flash":
        return kind(**spec["model"], attention=as_attention_function())
    return kind(**spec["model"])  # the model's default: Day 1's standard attention


def make_batch(model: str, spec: dict, device: str) -> tuple:
    """A random batch, the same for both attentions (its own generator)."""
    generator = torch.Generator().manual_seed(1)
    batch, config = spec["batch"], spec["model"]
    if model == "vit":
        images = torch.randn(batch, config.get("in_channels", 3), config["image_size"],
                             config["image_size"], generator=generator)
        labels = torch.randint(0, config["num_classes"], (batch,), generator=generator)
        return images.to(device), labels.to(device)
    tokens, vocab = spec["tokens"], config["source_vocab_size"]
    source, target = (torch.randint(1, vocab, (batch, n), generator=generator)
                      for n in (tokens, tokens + 1))  # target: decoder input + the next token
    # The last sequence ends with padding, so that the key padding masks have work to do.
    source[-1, -tokens // 4:], target[-1, -tokens // 4:] = PAD, PAD
    return source.to(device), target.to(device)


def training_step(model: str, network: torch.nn.Module, optimizer, batch: tuple,
                  device: str) -> Callable[[], torch.Tensor]:
    """The step as Day 3 and Day 6 train: Day 3's label-smoothed loss on the next token,
    with padding masks and causal decoding; cross-entropy on the ViT's logits."""
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda"
                else nullcontext())

    def step():
        with autocast:
            if model == "vit":
                images, labels = batch
                loss = F.cross_entropy(network(images), labels)
            else:
                source, target = batch
                decoder_input, labels = target[:, :-1], target[:, 1:]
                log_probs = network(source, decoder_input,
                                    source_key_padding_mask=padding_mask(source, PAD),
                                    target_key_padding_mask=padding_mask(decoder_input, PAD),
                                    causal=True)
                # Day 3's loss reads the ids' range on the host: one synchronisation a step,
                # the same for both attentions.
                loss = label_smoothing_loss(log_probs, labels, ignore_index=PAD)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def measure_case(model: str, spec: dict, attention: str, device: str,
                 initial_states: dict) -> dict:
    """Figures of one (model, attention): the same initial weights for both attentions."""
    torch.manual_seed(0)
    network = build_model(model, spec, attention)
    if model in initial_states:
        network.load_state_dict(initial_states[model])
    else:
        initial_states[model] = {k: v.detach().clone() for k, v in network.state_dict().items()}
    network.to(device).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    step = training_step(model, network, optimizer, make_batch(model, spec, device), device)
    losses = []

    def run():
        loss = step()
        if not losses:  # the first step's, from the initial weights
            losses.append(loss)

    def clear_gradients():  # set to None, so that each step's peak includes its gradients
        optimizer.zero_grad(set_to_none=True)

    # do_bench clears the gradients before each timed call too, as `reset` does here
    figures = bench.measure(run, device, clear_gradients, list(network.parameters()))
    if device == "cpu":  # PyTorch keeps no CPU allocator statistics: count tensor bytes
        figures["peak_tensor_mib"] = bench.peak_tensor_bytes(run) / 2 ** 20
        clear_gradients()
    parameters = sum(p.numel() for p in network.parameters())
    return {**figures, "loss": losses[0].item(), "parameters": parameters}


def _check_choices(name: str, values, allowed) -> tuple:
    if isinstance(values, str) or not isinstance(values, (list, tuple)) or not values or any(
            v not in allowed for v in values):
        raise ValueError(f"{name} must be a non-empty list or tuple of names from "
                         f"{list(allowed)}, got {values!r}")
    return tuple(values)


def run_model_benchmark(device: str = "cuda", size: str = "gpu", models=MODELS,
                        attentions=ATTENTIONS,
                        checkpoint: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """One row per (model, attention): status "ok", "OOM" or "error" (the message in "note",
    and no figures). `checkpoint(rows)` is called after each row, so that a run stopped early
    keeps what it measured. Ends with `add_ratios(rows)`."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {list(DEVICES)}, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda', but this machine has no CUDA device; use 'cpu'")
    if size not in MODEL_SIZES:
        raise ValueError(f"size must be one of {list(MODEL_SIZES)}, got {size!r}")
    models = _check_choices("models", models, MODEL_SIZES[size])
    attentions = _check_choices("attentions", attentions, ATTENTIONS)
    rows, initial_states = [], {}
    for model in models:
        spec = MODEL_SIZES[size][model]
        for attention in attentions:
            row = {"model": model, "attention": attention, "size": size, "device": device,
                   "dtype": "bfloat16 autocast" if device == "cuda" else "float32",
                   "batch": spec["batch"], "tokens": sequence_length(model, spec),
                   "parameters": None, "loss": None, "status": "ok", "ms": None,
                   "ms_min": None, "ms_max": None, "peak_mib": None, "peak_tensor_mib": None,
                   "note": ""}
            try:
                row.update(measure_case(model, spec, attention, device, initial_states))
            except (RuntimeError, TypeError, ValueError) as error:
                row.update(bench.failure(error))
            finally:
                bench.release_memory(device)
            rows.append(row)
            if checkpoint is not None:
                checkpoint(rows)
    add_ratios(rows)
    return rows


def _memory(row: dict) -> float | None:
    """The allocator's peak on CUDA; elsewhere the peak of the tensors' bytes."""
    return row["peak_mib"] if row.get("peak_mib") is not None else row.get("peak_tensor_mib")


def add_ratios(rows: list[dict]) -> None:
    """Against the standard row of the same model (both > 1 when flash does better):
    speedup = standard's time / this time; memory_ratio = standard's memory / this memory."""
    standard = {r["model"]: r for r in rows if r["attention"] == "standard"
                and r["status"] == "ok"}
    for row in rows:
        base = standard.get(row["model"])
        ok = base is not None and row["status"] == "ok"
        row["speedup"] = base["ms"] / row["ms"] if ok else None
        row["memory_ratio"] = (_memory(base) / _memory(row)
                               if ok and _memory(base) and _memory(row) else None)


TABLE_COLUMNS = [("model", "model", ""), ("attention", "attention", ""), ("dtype", "dtype", ""),
                 ("tokens", "N", "d"), ("batch", "batch", "d"), ("ms", "median ms", ".1f"),
                 ("ms_min", "min ms", ".1f"), ("ms_max", "max ms", ".1f"),
                 ("peak_mib", "peak MiB", ".0f"), ("peak_tensor_mib", "tensor MiB", ".1f"),
                 ("loss", "first loss", ".5f"), ("speedup", "x faster", ".2f"),
                 ("memory_ratio", "x less memory", ".2f")]


def format_model_table(rows: list[dict]) -> str:
    """The rows as a fixed-width text table; a failed row shows its status and note."""
    return bench.format_table(rows, TABLE_COLUMNS)
