"""Shared infrastructure of the repository (imports no day) and, in `common.layers`, the
collected reusable layers of every day."""

import logging

# Libraries that log on import (CONTRIBUTING.md, "Dependencies"): torchao (kernels it cannot
# load on a CPU, and a deprecation through torch's pytree) and bitsandbytes (a CPU kernel it
# cannot fetch). transformers imports torchao whenever it is installed, so without this
# every notebook that builds a Hugging Face model would print them. Set here, once, since
# every notebook and test imports `common` before those libraries.
for _name in ("torchao", "torch.utils._pytree", "bitsandbytes"):
    logging.getLogger(_name).setLevel(logging.ERROR)
