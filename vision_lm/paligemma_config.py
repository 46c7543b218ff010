"""`PaliGemmaConfig`: the image tower and the Gemma-style decoder of the captioner, nested.

The image tower is the SigLIP `VisionConfig` (every patch token is kept: no pooling), so a
trained SigLIP tower drops in (`vision_init_from`). The decoder is the shared `Transformer`
configured as Gemma (Gemma Team 2024): RMSNorm scaling by (1 + w), GeGLU with GELU(tanh),
multi-query attention (one key/value head), RoPE, token embeddings multiplied by sqrt(D),
output head tied to the embeddings. Compared with the Llama decoder only the norm offset,
the MLP gate's activation, the embedding scale and the attention mask (prefix-LM) differ.

The default values are the CPU model of `configs/vision/paligemma-shapes.yaml`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from shared.errors import UserError
from shared.nn.config import TransformerConfig
from vision_lm.config import VisionConfig


def _positive(prefix: str, obj, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int) or value <= 0:
            raise UserError(f"{prefix}.{name} must be a positive integer, got {value!r}")


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
        _positive("decoder", self, ("vocab_size", "max_len", "dim", "n_layers", "n_heads", "n_kv_heads"))
        if self.n_heads % self.n_kv_heads:
            raise UserError(
                f"decoder.n_kv_heads={self.n_kv_heads} must divide decoder.n_heads={self.n_heads}"
            )
        if self.head_dim is None and self.dim % self.n_heads:
            raise UserError(
                f"decoder.n_heads={self.n_heads} must divide decoder.dim={self.dim} (or set head_dim)"
            )

    def transformer(self, n_image_tokens: int) -> TransformerConfig:
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
        )


@dataclass
class PaliGemmaConfig:
    """Image tower -> linear projector -> Gemma-style decoder (PaliGemma, Beyer et al. 2024)."""

    vision: VisionConfig = field(default_factory=lambda: VisionConfig(pooling="none"))
    """The SigLIP image tower; PaliGemma keeps every patch token, so `pooling` is always none."""
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    """The text decoder."""
    zero_init_projector: bool = True
    """Start the image projector at zero (big_vision's PaliGemma): the decoder first learns the
    language alone, then lets the image in as the projector grows."""
    name: str = field(default="paligemma-tiny", compare=False)
    """Run name (the log folder's name)."""

    def __post_init__(self):
        if isinstance(self.vision, dict):
            self.vision = VisionConfig(**{**self.vision, "pooling": "none"})
        elif self.vision.pooling != "none":  # a VisionConfig built with its SigLIP default ("map")
            self.vision = dataclasses.replace(self.vision, pooling="none")
        if isinstance(self.decoder, dict):
            self.decoder = DecoderConfig(**self.decoder)
        self.decoder.transformer(self.n_image_tokens)  # validates head_dim, hidden_dim, ...

    @property
    def n_image_tokens(self) -> int:
        return self.vision.n_patches

    def transformer(self) -> TransformerConfig:
        return self.decoder.transformer(self.n_image_tokens)

    def to_dict(self) -> dict:
        """Plain data (checkpoints load with torch.load(weights_only=True))."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PaliGemmaConfig:
        """Inverse of `to_dict`; unknown fields are an error naming them."""
        for klass, sub, prefix in (
            (cls, d, ""),
            (VisionConfig, d.get("vision", {}), "vision."),
            (DecoderConfig, d.get("decoder", {}), "decoder."),
        ):
            unknown = set(sub) - {f.name for f in dataclasses.fields(klass)}
            if unknown:
                names = ", ".join(prefix + u for u in sorted(unknown))
                raise UserError(f"unknown PaliGemmaConfig field(s): {names}")
        return cls(**d)
