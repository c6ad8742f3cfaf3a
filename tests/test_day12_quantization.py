"""Day 12's quantizers on shapes, seeds and settings the notebook does not run, bit for bit
against the same libraries, and their refusals of bad inputs."""

import pytest
import torch
from torch import nn

from day12_quantization import (
    DynamicInt8Linear,
    HessianOfInputs,
    code_range,
    dequantize_nf4,
    gptq,
    input_hessians,
    kl_divergence,
    quantize,
    quantize_nf4,
    quantize_rows_int8,
    quantized_copy,
    round_to_nearest,
    weight_only_bytes,
)
from day12_quantization.quantization import neural_compressor_gptq, shared_linear_weights


@pytest.mark.parametrize("seed", [11, 12])
def test_the_affine_map_equals_torchao_on_other_shapes(seed):
    from torchao.quantization.quant_primitives import (
        MappingType,
        choose_qparams_affine,
        dequantize_affine,
        quantize_affine,
    )

    torch.manual_seed(seed)
    weight = torch.randn(24, 48) * torch.rand(24, 1) + 0.3 * torch.rand(24, 1)
    for bits in (2, 5, 6, 7):
        for symmetric in (True, False):
            for group_size, block in ((None, (1, 48)), (16, (1, 16)), (weight.numel(), (24, 48))):
                ours = quantize(weight, bits, symmetric, group_size)
                low, high = code_range(bits, symmetric)
                mapping = MappingType.SYMMETRIC if symmetric else MappingType.ASYMMETRIC
                container = torch.int8 if symmetric else torch.uint8
                scale, zero = choose_qparams_affine(weight, mapping, block, container, low, high)
                codes = quantize_affine(weight, block, scale, zero, container, low, high)
                assert torch.equal(ours.codes, codes.int())
                assert torch.equal(ours.dequantize(), dequantize_affine(
                    codes, block, scale, zero, container, low, high))


def test_an_all_zero_group_stays_zero_and_the_top_code_is_clamped():
    weight = torch.zeros(2, 8)
    weight[1] = 0.5
    for symmetric in (True, False):
        quantized = quantize(weight, 4, symmetric)
        assert torch.isfinite(quantized.scale).all()
        assert torch.equal(quantized.dequantize()[0], torch.zeros(8))
    # symmetric: the largest weight maps to (qmax - qmin) / 2 = 7.5, rounds to 8, is clamped
    assert quantize(weight, 4, True).codes[1].tolist() == [7] * 8


def test_the_affine_map_refuses_what_it_cannot_mean():
    weight = torch.randn(4, 8)
    with pytest.raises(ValueError, match="bits must be from 2 to 8, got 1"):
        quantize(weight, 1)
    with pytest.raises(ValueError, match="bits must be from 2 to 8, got 16"):
        quantize(weight, 16)
    with pytest.raises(TypeError, match="bits must be an int"):
        quantize(weight, 4.0)
    with pytest.raises(ValueError, match="group_size=3 must divide the weight's 8 columns"):
        quantize(weight, 4, group_size=3)
    with pytest.raises(ValueError, match="group_size must be a positive int, got 0"):
        quantize(weight, 4, group_size=0)
    with pytest.raises(ValueError, match="convention must be one of"):
        quantize(weight, 4, convention="gguf")
    with pytest.raises(ValueError, match="symmetric=True"):
        quantize(weight, 8, False, convention="quanto")
    with pytest.raises(ValueError, match="weight"):
        quantize(torch.randn(8), 4)
    broken = weight.clone()
    broken[1, 2] = float("nan")
    for call in (lambda: quantize(broken, 4), lambda: quantize_nf4(broken, 8),
                 lambda: round_to_nearest(broken, 4), lambda: gptq(broken, torch.eye(8), 4)):
        with pytest.raises(ValueError, match="weight holds NaN or infinite values"):
            call()


def test_nf4_and_int8_rows_equal_bitsandbytes_on_other_blocks():
    import bitsandbytes.functional as bnb

    torch.manual_seed(5)
    weight = torch.randn(32, 128) * 3
    for block_size in (32, 128):
        packed, absmax = quantize_nf4(weight, block_size)
        theirs, state = bnb.quantize_4bit(weight, blocksize=block_size, quant_type="nf4")
        assert torch.equal(packed, theirs.view(-1)) and torch.equal(absmax, state.absmax)
        assert torch.equal(dequantize_nf4(packed, absmax, weight.shape),
                           bnb.dequantize_4bit(theirs, state))
    activations = torch.randn(8, 32) * 4  # some magnitudes above 6 in several columns
    for threshold in (0.0, 6.0, 10.0):
        ours = quantize_rows_int8(activations, threshold)
        theirs = bnb.int8_vectorwise_quant(activations.clone(), threshold=threshold)
        assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
        if threshold:
            assert torch.equal(ours[2], theirs[2])
    with pytest.raises(ValueError, match="multiple of block_size=64"):
        quantize_nf4(torch.randn(3, 10))


def test_gptq_equals_neural_compressor_with_other_blocks_and_groups():
    reference = neural_compressor_gptq()
    torch.manual_seed(7)
    layer = nn.Linear(64, 20)
    mixing = torch.randn(64, 64)
    batches = [torch.randn(3, 5, 64) @ mixing for _ in range(3)]
    for bits, symmetric, group_size, block_size in ((3, False, 8, 16), (5, True, 32, 64),
                                                   (6, False, None, 24)):
        theirs = reference(layer, W=layer.weight.data.clone())
        theirs.quantizer.configure({"bits": bits, "sym": symmetric, "perchannel": True,
                                    "mse": False, "dtype": "int", "use_double_quant": False,
                                    "double_quant_sym": False,
                                    "group_size": group_size or -1})
        ours = HessianOfInputs(64)
        for batch in batches:
            theirs.add_batch(batch, None)
            ours.add(batch)
        *_, their_weight = theirs.fasterquant(layer.weight.data.clone(), blocksize=block_size,
                                              groupsize=group_size or -1)
        assert torch.equal(gptq(layer.weight.data, ours.hessian, bits, symmetric, group_size,
                                block_size), their_weight)


def test_gptq_refuses_bad_inputs_and_keeps_dead_inputs_at_zero():
    weight = torch.randn(6, 8)
    hessian = HessianOfInputs(8)
    with pytest.raises(ValueError, match="no calibration data"):
        gptq(weight, hessian.hessian, 4)
    with pytest.raises(ValueError, match=r"inputs must have shape \(tokens, 8\)"):
        hessian.add(torch.randn(2, 7))
    with pytest.raises(ValueError, match="inputs must have shape"):
        hessian.add(torch.randn(8))  # one vector: which are the samples?
    with pytest.raises(ValueError, match="hessian must be symmetric"):
        gptq(weight, torch.eye(8) + torch.triu(torch.ones(8, 8), 1), 4)
    with pytest.raises(ValueError, match="not positive definite"):
        gptq(weight, -torch.eye(8), 4)
    inputs = torch.randn(20, 8)
    inputs[:, 3] = 0  # an input that is always 0
    hessian.add(inputs)
    quantized = gptq(weight, hessian.hessian, 4)
    assert torch.equal(quantized[:, 3], torch.zeros(6))
    with pytest.raises(ValueError, match=r"hessian must be \(8, 8\)"):
        gptq(weight, torch.eye(7), 4)
    with pytest.raises(ValueError, match="group_size=3 must divide"):
        gptq(weight, hessian.hessian, 4, group_size=3)
    with pytest.raises(ValueError, match="bits must be from 2 to 8"):
        gptq(weight, hessian.hessian, 9)
    with pytest.raises(ValueError, match="group_size=5 must divide"):
        round_to_nearest(weight, 4, group_size=5)


def test_a_model_quantized_both_ways_and_its_exact_bytes():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    inputs = torch.randn(64, 16)
    with pytest.raises(ValueError, match="batches is empty"):
        input_hessians(model, [])
    hessians = input_hessians(model, list(inputs.split(16)))
    with torch.no_grad():
        reference = model(inputs)
        nearest = kl_divergence(reference, quantized_copy(model, 3)(inputs))
        ours = kl_divergence(reference, quantized_copy(model, 3, hessians=hessians)(inputs))
    assert 0 <= ours < nearest
    # 4-bit codes of 16*32 + 32*4 weights, a float32 scale and a 4-bit zero per row (36),
    # and the float32 biases (36)
    assert weight_only_bytes(model, 4) == (640 * 4 + 36 * 4) // 8 + 4 * 36 + 4 * 36
    assert weight_only_bytes(model, None) == 4 * sum(p.numel() for p in model.parameters())


def test_the_int8_linear_layer_equals_torchao_on_other_shapes_and_refuses_bad_inputs():
    import copy

    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    torch.manual_seed(9)
    for bias in (True, False):
        layer = nn.Linear(40, 24, bias=bias)
        theirs = nn.Sequential(copy.deepcopy(layer))
        quantize_(theirs, Int8DynamicActivationInt8WeightConfig())
        inputs = torch.randn(3, 5, 40)
        inputs[0, 0] = 0  # a row of zeros: its scale is the smallest, its output the bias
        with torch.no_grad():
            assert torch.equal(DynamicInt8Linear(layer)(inputs), theirs(inputs))
    with pytest.raises(ValueError, match="last dimension 40"):
        DynamicInt8Linear(layer)(torch.randn(2, 41))
    with pytest.raises(ValueError, match="x holds NaN or infinite values"):
        DynamicInt8Linear(layer)(torch.full((2, 40), float("inf")))
    with pytest.raises(ValueError, match="x holds NaN or infinite values"):
        quantize_rows_int8(torch.full((2, 40), float("nan")))
    with pytest.raises(TypeError, match="linear must be a Linear"):
        DynamicInt8Linear(nn.Conv1d(2, 2, 1))


def test_a_tied_weight_is_found_kept_and_counted_once():
    from day10_serving import GPT2

    torch.manual_seed(4)
    model = GPT2(vocab_size=11, d_model=16, num_layers=1, num_heads=2, max_len=8)
    assert shared_linear_weights(model) == {"lm_head"}
    assert shared_linear_weights(nn.Sequential(nn.Linear(2, 2))) == set()
    kept = quantized_copy(model, 3, keep={"lm_head"})
    assert torch.equal(kept.lm_head.weight, model.lm_head.weight)
    assert torch.equal(kept.token_embedding.weight, model.token_embedding.weight)
    assert not torch.equal(kept.blocks[0].mlp.linear1.weight, model.blocks[0].mlp.linear1.weight)
    # the tied matrix, once, in float32 when kept: 11 * 16 * 4 bytes more than quantized
    difference = weight_only_bytes(model, 3, keep={"lm_head"}) - weight_only_bytes(model, 3)
    assert difference == 11 * 16 * 4 - (11 * 16 * 3 + 11 * 3 + 7) // 8 - 4 * 11
    with pytest.raises(ValueError, match="keep names no linear layer"):
        quantized_copy(model, 3, keep={"head"})
    with pytest.raises(ValueError, match="keep names no linear layer"):
        weight_only_bytes(model, 3, keep={"head"})
    with pytest.raises(ValueError, match="missing"):
        quantized_copy(model, 3, hessians={})
    with pytest.raises(ValueError, match="group_size=3 must divide the 16 columns"):
        weight_only_bytes(model, 3, group_size=3)


def test_kl_divergence_takes_matching_finite_logits_only():
    logits = torch.randn(4, 3, 5)
    assert kl_divergence(logits, logits) == 0.0
    other = logits + torch.randn(4, 3, 5)
    # every leading position is an example: (4, 3, 5) is 12 examples, as (12, 5) is
    assert kl_divergence(logits, other) == pytest.approx(
        kl_divergence(logits.reshape(12, 5), other.reshape(12, 5)))
    assert kl_divergence(logits, other) > 0
    with pytest.raises(ValueError, match="same shape"):
        kl_divergence(torch.randn(3, 5), torch.randn(1, 5))
    with pytest.raises(ValueError, match="reference_logits holds NaN"):
        kl_divergence(torch.full((2, 5), float("nan")), torch.randn(2, 5))
    with pytest.raises(TypeError, match="logits has dtype torch.int64"):
        kl_divergence(torch.randn(2, 5), torch.ones(2, 5, dtype=torch.int64))
