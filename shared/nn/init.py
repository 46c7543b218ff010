"""Weight initialisation, in one place.

| parameter                                   | initialisation                          |
|---------------------------------------------|-----------------------------------------|
| nn.Linear / nn.Embedding weights            | normal(0, std), std = 0.02 (GPT-2)      |
| residual output projections: attention      | normal(0, std / sqrt(2 * n_layers))     |
|   `o_proj`, MLP `down_proj`, MoE experts'   |   (GPT-2: keeps the residual stream's   |
|   `down_proj`                               |   variance independent of depth)        |
|   with `zero_out=True` (`zero_init_out`)    |   zeros: every block starts as the      |
|                                             |   identity (modded-nanogpt, nanochat)   |
| MoE expert `gate_proj` / `up_proj`, router  | normal(0, std)                          |
| biases                                      | zeros                                   |
| RMSNorm / LayerNorm weight                  | ones ((1 + w) RMSNorm: zeros)           |
| LayerNorm bias                              | zeros                                   |

Zero output projections (`TransformerConfig.zero_init_out`): with o_proj = down_proj = 0 a block
computes x + 0 + 0, so at step 0 the stack is the identity on the residual stream and the logits
are the (normed) embeddings' own; the gradients of the zeroed matrices are not zero (they are the
outer products of the block's inputs and the upstream gradient), so they move on the first step.
Used by modded-nanogpt's record runs and nanochat's `init_weights`; the same idea as ReZero
(Bachlechner et al. 2020) and Fixup (Zhang et al. 2019) without the extra scalars.

Models call `init_weights` on themselves after building; tied embeddings share the
token embedding's initialisation. Anything a model initialises differently (the
zero-initialised PaliGemma projector, SigLIP's temperature and bias) it sets right after.
"""

from __future__ import annotations

import math

from torch import nn

RESIDUAL_OUTPUTS = ("o_proj", "down_proj")


def init_weights(model: nn.Module, n_layers: int, std: float = 0.02, zero_out: bool = False) -> None:
    """Initialise every parameter of `model` as the table above says (zero_out: residual outputs = 0)."""
    out_std = 0.0 if zero_out else std / math.sqrt(2 * max(n_layers, 1))  # normal(0, 0) is exactly 0
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, out_std if leaf in RESIDUAL_OUTPUTS else std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, std)
        elif hasattr(module, "reset_parameters") and "Norm" in type(module).__name__:
            module.reset_parameters()
    for name, param in model.named_parameters(recurse=True):
        leaf = name.rsplit(".", 1)[-1]
        if param.dim() == 3:  # stacked MoE expert weights (E, out, in)
            nn.init.normal_(param, 0.0, out_std if leaf in RESIDUAL_OUTPUTS else std)
