"""Day 2: the encoder and decoder stacks and the generator, built on Day 1's components.

The modules beside this file are generated from `day02_encoder_decoder.ipynb`; edit the notebook.
"""

from .decoder import (
    Decoder,
    DecoderLayer,
    Generator,
    copy_into_torch_decoder,
    copy_into_torch_decoder_layer,
)
from .encoder import (
    Encoder,
    EncoderLayer,
    copy_into_torch_encoder,
    copy_into_torch_encoder_layer,
)

__all__ = [
    "Decoder",
    "DecoderLayer",
    "Encoder",
    "EncoderLayer",
    "Generator",
    "copy_into_torch_decoder",
    "copy_into_torch_decoder_layer",
    "copy_into_torch_encoder",
    "copy_into_torch_encoder_layer",
]
