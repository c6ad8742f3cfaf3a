"""Day 11, run for real: each proof starts new processes joined in a gloo group (about 3 s a
launch on two cores, so the tests share launches where they can). Other seeds and sizes than
the notebook's; the launcher's errors and time limit; bad inputs named before any process
starts; the training command under torchrun."""

import copy
import os
import subprocess
import sys
import time
from fractions import Fraction

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from day01_transformer import MultiHeadAttention, PositionwiseFeedForward
from day06_vit_head.training import load_digits_split
from day11_distributed import (
    Checkpointed,
    TensorParallelMLP,
    digits_mlp,
    gpipe_timeline,
    launch,
    parallel,
    rank_and_size,
    shard,
    split_stages,
    train_steps,
)
from day11_distributed.train import train_vit


def test_launch_refuses_bad_arguments_before_starting_anything():
    with pytest.raises(ValueError, match="world_size must be a positive int, got 0"):
        launch(parallel.rank_and_size, 0)
    with pytest.raises(TypeError, match="world_size must be an int"):
        launch(parallel.rank_and_size, 2.0)
    with pytest.raises(TypeError, match="worker must be callable"):
        launch("rank_and_size", 2)
    with pytest.raises(ValueError, match="timeout must be"):
        launch(parallel.rank_and_size, 2, timeout=0)
    with pytest.raises(ValueError, match="importable module"):
        launch(lambda: 0, 2)


def test_a_failing_rank_and_a_hanging_one_end_in_named_errors():
    with pytest.raises(RuntimeError, match=r"(?s)rank \d of world_size=2.*length=5 must be "
                                           r"divisible by world_size=2"):
        launch(parallel.show_collectives, 2, 5)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"ranks \[0, 1\] of world_size=2 .* timeout=2 s"):
        launch(time.sleep, 2, 600, timeout=2)
    assert time.monotonic() - start < 30  # stopped, not waited for
    with pytest.raises(TypeError, match="digits_mlp returned something that is not made of"):
        launch(parallel.digits_mlp, 1)  # a whole module: refused, not unpickled


def test_outside_a_process_group_the_workers_say_where_to_run():
    with pytest.raises(RuntimeError, match="inside `launch`"):
        rank_and_size()
    with pytest.raises(RuntimeError, match="inside `launch`"):
        TensorParallelMLP(PositionwiseFeedForward(8, 16))
    with pytest.raises(RuntimeError, match="runs in a process group"):
        train_vit("DDP", steps=1)
    with pytest.raises(ValueError, match="strategy must be one of"):
        train_vit("ZeRO-3", steps=1)


def test_ring_all_reduce_on_three_ranks_and_uneven_chunks():
    for result in launch(parallel.prove_ring_all_reduce, 3, 1001, 7):
        assert torch.equal(result["integers ring"], result["integers all_reduce"])
        assert_close(result["floats ring"], result["floats all_reduce"])
        # chunks of 334, 334 and 333 floats: each rank sends 2 (N - 1) of them
        assert 4 * 2 * 333 * 2 <= result["floats sent"] <= 4 * 2 * 334 * 2


def test_shard_refuses_what_it_cannot_cut_into_equal_shares():
    batch = torch.arange(10)
    assert torch.equal(shard(batch, 1, 2), torch.arange(5, 10))
    with pytest.raises(ValueError, match=r"batch of shape \(10,\) cannot be cut into "
                                         r"world_size=3 equal, non-empty shares"):
        shard(batch, 0, 3)
    with pytest.raises(ValueError, match="rank must be below world_size=2, got 2"):
        shard(batch, 2, 2)
    with pytest.raises(ValueError, match="world_size must be a positive int, got 0"):
        shard(batch, 0, 0)
    with pytest.raises(ValueError, match="micro_batches"):
        train_steps(digits_mlp(), torch.optim.SGD(digits_mlp().parameters()), [], 0)
    with pytest.raises(ValueError, match="equal, non-empty shares"):
        shard(torch.empty(0, 3), 0, 1)


def test_training_steps_refuse_what_would_spoil_the_model():
    model = digits_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    broken = x.clone()
    broken[0, 0, 0, 0] = float("nan")
    before = [parameter.clone() for parameter in model.parameters()]
    with pytest.raises(ValueError, match=r"the loss of batches\[1\] is nan"):
        train_steps(model, optimizer, [(x, y), (broken, y)])
    assert not any(parameter.isnan().any() for parameter in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with pytest.raises(ValueError, match="micro_batches=3 equal"):
        train_steps(model, optimizer, [(x, y)], micro_batches=3)
    with pytest.raises(ValueError, match="8 inputs but 4 labels"):
        train_steps(model, optimizer, [(x, y[:4])])
    with pytest.raises(TypeError, match=r"batches\[0\] must be an \(inputs, labels\) pair"):
        train_steps(model, optimizer, [x])
    with pytest.raises(TypeError, match="optimizer must be a Optimizer"):
        train_steps(model, "sgd", [(x, y)])
    with pytest.raises(ValueError, match="world_size=100000 processes"):
        launch(parallel.rank_and_size, 100_000)
    with pytest.raises(ValueError, match="width=10000000 would allocate"):
        digits_mlp(10_000_000)
    with pytest.raises(ValueError, match="larger than the 1347 training digits"):
        train_vit("single", steps=1, batch_size=10**6)


def _batches(seed: int, steps: int = 4, size: int = 48):
    x_train, y_train, _, _ = load_digits_split()
    picks = torch.Generator().manual_seed(seed)
    return [(x_train[pick], y_train[pick])
            for pick in [torch.randperm(len(y_train), generator=picks)[:size]
                         for _ in range(steps)]]


@pytest.mark.parametrize("seed", [3])
def test_data_parallel_strategies_equal_one_process_on_other_batches(seed):
    batches = _batches(seed)
    torch.manual_seed(seed)
    model = digits_mlp()
    start = copy.deepcopy(model.state_dict())
    train_steps(model, parallel.adamw(model), batches)
    results = launch(parallel.data_parallel, 2, parallel.STRATEGIES, start, batches,
                     timeout=120)
    for strategy in parallel.STRATEGIES:
        assert_close(results[1][strategy]["state"], model.state_dict(), rtol=0, atol=1e-5)
    # two ranks: FSDP2 halves every row count of this model exactly
    psi = sum(parameter.numel() for parameter in model.parameters())
    assert results[1]["FSDP2"]["memory"] == {"parameters": 2 * psi, "gradients": 2 * psi,
                                             "optimizer": 4 * psi}


def test_tensor_parallel_refuses_layers_it_cannot_split_and_inputs_it_cannot_take():
    mlp, attention = PositionwiseFeedForward(12, 48), MultiHeadAttention(12, 4)
    with pytest.raises(RuntimeError, match="d_ff=48 must be divisible by world_size"):
        launch(parallel.prove_tensor_parallel, 5, mlp, attention, torch.randn(1, 2, 12))
    with pytest.raises(RuntimeError, match=r"x must have shape \(\.\.\., d_model\) with "
                                           r"d_model=12, got \(1, 2, 10\)"):
        launch(parallel.prove_tensor_parallel, 2, mlp, attention, torch.randn(1, 2, 10))


def test_pipeline_on_two_stages_equals_one_process():
    x_train, y_train, _, _ = load_digits_split()
    torch.manual_seed(1)
    model = digits_mlp()
    start = copy.deepcopy(model.state_dict())
    nn.functional.cross_entropy(model(x_train[:48]), y_train[:48]).backward()
    for rank, result in enumerate(launch(parallel.prove_pipeline, 2, start, x_train[:48],
                                         y_train[:48], 4)):
        assert result["order"] == ["F0", "F1", "F2", "F3", "B3", "B2", "B1", "B0"]
        for name, gradient in result["gradients"].items():
            assert_close(gradient, model.get_parameter(name).grad, rtol=0, atol=1e-7)
            assert_close(result["their gradients"][name], gradient, rtol=0, atol=1e-7)
        assert (result["loss"] is None) == (rank == 0)


def test_split_stages_and_the_bubble():
    layers = digits_mlp()
    assert [len(stage) for stage in split_stages(layers, 4)] == [2, 2, 1, 1]
    with pytest.raises(ValueError, match="fewer than stages=7"):
        split_stages(layers, 7)
    with pytest.raises(TypeError, match="layers must be a Sequential"):
        split_stages(nn.Linear(2, 2), 1)
    for stages in (1, 2, 5):
        for micro_batches in (1, 3, 8):
            timeline = gpipe_timeline(stages, micro_batches)
            idle = Fraction(sum(slot is None for row in timeline for slot in row),
                            stages * len(timeline[0]))
            assert idle == Fraction(stages - 1, micro_batches + stages - 1)


def test_checkpointed_blocks_give_the_same_gradients():
    torch.manual_seed(2)
    blocks = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 6))
    x = torch.randn(3, 6)
    blocks(x).sum().backward()
    plain = [parameter.grad.clone() for parameter in blocks.parameters()]
    blocks.zero_grad()
    Checkpointed(blocks)(x).sum().backward()
    assert all(torch.equal(a, parameter.grad) for a, parameter in
               zip(plain, blocks.parameters(), strict=True))
    with pytest.raises(TypeError, match="blocks must be a Sequential"):
        Checkpointed(nn.Linear(2, 2))


def test_the_training_command_under_torchrun_equals_one_process():
    alone = train_vit("single", steps=4)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", "-m", "day11_distributed.train", "--strategy", "FSDP2",
               "--steps", "4"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300,
                              env=environment)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert (f"FSDP2: loss {alone['losses'][0]:.3f} -> {alone['losses'][-1]:.3f} in 4 steps"
            in finished.stdout)
