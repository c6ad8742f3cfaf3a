"""Day 12: quantization. The affine map (symmetric and asymmetric, per tensor, channel or
group) proven bit for bit against torchao and optimum-quanto, NF4 and LLM.int8's vector-wise
int8 against bitsandbytes, a dynamic int8 linear layer against torchao, GPTQ against Intel
Neural Compressor, and both applied to Day 6's ViT.

The module beside this file (`quantization.py`) is generated from `day12_quantization.ipynb`;
edit the notebook.
"""

from .quantization import (
    DynamicInt8Linear,
    HessianOfInputs,
    Quantized,
    code_range,
    dequantize_nf4,
    gptq,
    input_hessians,
    kl_divergence,
    normal_float_code,
    quantize,
    quantize_nf4,
    quantize_rows_int8,
    quantized_copy,
    round_to_nearest,
    weight_only_bytes,
)

__all__ = [
    "DynamicInt8Linear",
    "HessianOfInputs",
    "Quantized",
    "code_range",
    "dequantize_nf4",
    "gptq",
    "input_hessians",
    "kl_divergence",
    "normal_float_code",
    "quantize",
    "quantize_nf4",
    "quantize_rows_int8",
    "quantized_copy",
    "round_to_nearest",
    "weight_only_bytes",
]
