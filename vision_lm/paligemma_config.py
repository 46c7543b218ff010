"""`PaliGemmaConfig`: the image tower and the Gemma-style decoder of the captioner, nested.

The image tower is the SigLIP `VisionConfig` (every patch token is kept: no pooling), so a
trained SigLIP tower drops in (`vision_init_from`). The decoder is the shared `Transformer`
configured as Gemma (Gemma Team 2024): RMSNorm scaling by (1 + w), GeGLU with GELU(tanh),
multi-query attention (one key/value head), RoPE, token embeddings multiplied by sqrt(D),
output head tied to the embeddings. Compared with the Llama decoder only the norm offset,
the MLP gate's activation, the embedding scale and the attention mask (prefix-LM) differ.

Presets (`PaliGemmaConfig.preset(name)`); a shipped YAML naming one trains exactly it
(tests/test_presets_match_yaml.py):
- paligemma-tiny: the siglip-tiny tower (64 image tokens) and a 128-wide 4-layer decoder;
  `configs/vision/paligemma-shapes.yaml`, for 2 CPU cores. `PaliGemmaConfig()` is this preset.
- paligemma-small: the siglip-small tower (256 image tokens) and a 384-wide 6-layer decoder, for
  one GPU (`configs/vision/paligemma-gpu.yaml` adds the composing tower's stem and feature layers).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from shared.errors import UserError
from shared.nn.config import TransformerConfig
from shared.nn.config_base import ModelConfig, check_positive
from vision_lm.config import VisionConfig

PRESETS: dict[str, dict] = {
    "paligemma-tiny": {
        "vision": dict(image_size=64, patch_size=8, dim=128, n_layers=4, n_heads=4),
        "decoder": dict(
            vocab_size=512, max_len=24, dim=128, n_layers=4, n_heads=4, n_kv_heads=1, hidden_dim=512
        ),
    },
    "paligemma-small": {
        "vision": dict(image_size=64, patch_size=4, dim=384, n_layers=6, n_heads=6),
        "decoder": dict(
            vocab_size=512,
            max_len=24,
            dim=384,
            n_layers=6,
            n_heads=6,
            n_kv_heads=1,
            head_dim=64,
            hidden_dim=1536,
        ),
    },
}


@dataclass
class DecoderConfig:
    """The Gemma-style decoder: tokens * sqrt(D) (image tokens unscaled) -> Transformer -> tied head."""

    vocab_size: int = 512
    """Embedding rows; at least the tokenizer's vocabulary (specials included)."""
    max_len: int = 24
    """Text tokens per example, prompt and answer together (<|bos|> prefix <|sep|> suffix <|eos|>)."""
    dim: int = 128
    """Width of the residual stream."""
    n_layers: int = 4
    """Transformer blocks."""
    n_heads: int = 4
    """Query heads."""
    n_kv_heads: int = 1
    """Key/value heads: 1 = multi-query attention (Gemma 2B, PaliGemma), n_heads = multi-head."""
    head_dim: int | None = None
    """Per-head size (None: dim // n_heads; Gemma decouples it from dim)."""
    hidden_dim: int | None = None
    """GeGLU hidden size (None: 8/3 * dim rounded up to a multiple of 64)."""
    norm_eps: float = 1e-6
    """RMSNorm epsilon (Gemma: 1e-6)."""
    rope_theta: float = 10000.0
    """RoPE base (Gemma: 10000)."""

    def __post_init__(self):
        check_positive("decoder.", self, ("vocab_size", "max_len"))
        self.transformer(0)  # validates widths and heads (the image tokens only lengthen max_seq_len)

    def transformer(self, n_image_tokens: int) -> TransformerConfig:
        """The decoder's stack over n_image_tokens image tokens then max_len text tokens."""
        c = self
        return TransformerConfig(
            dim=c.dim,
            n_layers=c.n_layers,
            n_heads=c.n_heads,
            n_kv_heads=c.n_kv_heads,
            head_dim=c.head_dim,
            hidden_dim=c.hidden_dim,
            mlp="geglu",
            norm="rmsnorm",
            norm_eps=c.norm_eps,
            norm_unit_offset=True,
            gelu_approximate="tanh",
            rope=True,
            rope_theta=c.rope_theta,
            causal=True,  # the prefix-LM mask is always given explicitly
            max_seq_len=n_image_tokens + c.max_len,
            where="decoder.",
        )


@dataclass
class PaliGemmaConfig(ModelConfig):
    """Image tower -> linear projector -> Gemma-style decoder (PaliGemma, Beyer et al. 2024)."""

    vision: VisionConfig = field(
        default_factory=lambda: VisionConfig(**PRESETS["paligemma-tiny"]["vision"], pooling="none")
    )
    """The SigLIP image tower; PaliGemma keeps every patch token, so `pooling` is always none."""
    decoder: DecoderConfig = field(
        default_factory=lambda: DecoderConfig(**PRESETS["paligemma-tiny"]["decoder"])
    )
    """The text decoder."""
    zero_init_projector: bool = True
    """Start the image projector at zero (big_vision's PaliGemma): the decoder first learns the
    language alone, then lets the image in as the projector grows."""
    vision_feature_layers: list[int] = field(default_factory=lambda: [-1])
    """Which of the tower's token states the projector reads, concatenated along features (LLaVA's
    `vision_feature_layer` as a list): 0 = the stem's patch embeddings plus positions, i = block i,
    -1 = the last block after the final norm (PaliGemma; the default). Objects in scenes of several
    shapes keep their shape best in the stem's tokens: a probe on them reads each object's shape
    where the later blocks, trained for a pooled SigLIP vector, have mixed the objects
    (BENCHMARKS.md, "The captioner on the composing tower")."""
    name: str = field(default="paligemma-tiny", compare=False)
    """Run name (the log folder's name)."""

    PRESETS: ClassVar[dict[str, dict]] = PRESETS

    def __post_init__(self):
        super().__post_init__()  # vision / decoder dicts become their configs
        if self.vision.pooling != "none":  # a VisionConfig built with its SigLIP default ("map")
            self.vision = dataclasses.replace(self.vision, pooling="none")
        layers, n = self.vision_feature_layers, self.vision.n_layers
        ints = isinstance(layers, (list, tuple)) and all(type(i) is int for i in layers)
        if not ints or not layers or any(not -(n + 1) <= i <= n for i in layers):
            raise UserError(
                f"vision_feature_layers must be a non-empty list of indices in [-{n + 1}, {n}] "
                f"(the tower's {n + 1} token states), got {layers!r}"
            )
        self.vision_feature_layers = list(layers)

    def hf_unsupported(self) -> list[str]:
        """The options Hugging Face's PaliGemma cannot represent, by field name (exports refuse them)."""
        return self.vision.hf_unsupported() + ["vision_feature_layers"] * (self.vision_feature_layers != [-1])

    @property
    def n_image_tokens(self) -> int:
        return self.vision.n_patches

    def transformer(self) -> TransformerConfig:
        return self.decoder.transformer(self.n_image_tokens)
