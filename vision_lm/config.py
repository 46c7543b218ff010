"""`SigLIPConfig`: the image tower, the text tower and the contrastive head, as nested dataclasses.

Both towers are the shared bidirectional `Transformer` (LayerNorm, GELU(tanh) MLP, biases,
learned absolute positions, no RoPE, no causal mask), the layout of ViT (Dosovitskiy et
al. 2021) and of SigLIP's towers (Zhai et al. 2023). `VisionConfig` is reused by the
PaliGemma captioner with `pooling: none` (every patch token goes to the decoder).

Presets (`SigLIPConfig.preset(name)`):
- siglip-tiny: 64 px images, 8 px patches, two 128-wide 4-layer towers (1.9M parameters);
  trains on the shapes set on 2 CPU cores in minutes.
- siglip-small: 64 px, 4 px patches (256 tokens), 384-wide 6-layer towers (24M); a GPU run
  (`configs/vision/siglip-gpu.yaml` trains these widths with the composing stem and pooling).
- siglip-base: the shape of google/siglip-base-patch16-224 (ViT-B/16, 224 px, 768 wide,
  12 layers, 32000-token vocabulary, 64-token texts), (203M), for reference and export.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from shared.errors import UserError
from shared.nn.config import TransformerConfig
from shared.nn.config_base import ModelConfig, check_positive

PRESETS: dict[str, dict] = {
    "siglip-tiny": {
        "vision": dict(image_size=64, patch_size=8, dim=128, n_layers=4, n_heads=4),
        "text": dict(vocab_size=512, max_len=16, dim=128, n_layers=4, n_heads=4),
    },
    "siglip-small": {
        "vision": dict(image_size=64, patch_size=4, dim=384, n_layers=6, n_heads=6),
        "text": dict(vocab_size=512, max_len=16, dim=384, n_layers=6, n_heads=6),
    },
    "siglip-base": {
        "vision": dict(image_size=224, patch_size=16, dim=768, n_layers=12, n_heads=12, hidden_dim=3072),
        "text": dict(vocab_size=32000, max_len=64, dim=768, n_layers=12, n_heads=12, hidden_dim=3072),
    },
}
"""The presets. The towers' defaults are siglip-tiny's, so `SigLIPConfig()` is siglip-tiny;
configs/vision/siglip-*.yaml set the same values (tests/test_presets_match_yaml.py)."""


def _tower(where: str, dim, n_layers, n_heads, hidden_dim, norm_eps, max_seq_len) -> TransformerConfig:
    """The bidirectional pre-LayerNorm stack both towers share (HF `SiglipEncoder` + final norm)."""
    return TransformerConfig(
        dim=dim,
        n_layers=n_layers,
        n_heads=n_heads,
        hidden_dim=hidden_dim,
        mlp="gelu",
        norm="layernorm",
        norm_eps=norm_eps,
        attn_bias=True,
        out_bias=True,
        gelu_approximate="tanh",
        rope=False,
        causal=False,
        max_seq_len=max_seq_len,
        where=where,
    )


@dataclass
class VisionConfig:
    """The ViT image tower: patches -> Transformer -> pooled vector (or all patch tokens)."""

    image_size: int = 64
    """Side of the square input image in pixels; images are resized to it."""
    patch_size: int = 8
    """Side of one patch in pixels; the tower sees (image_size / patch_size)^2 tokens."""
    dim: int = 128
    """Width of the tower (patch embedding and residual stream)."""
    n_layers: int = 4
    """Transformer blocks."""
    n_heads: int = 4
    """Attention heads (must divide dim)."""
    hidden_dim: int | None = None
    """MLP hidden size (None: 4 * dim)."""
    norm_eps: float = 1e-6
    """LayerNorm epsilon (1e-6 as in SigLIP)."""
    pooling: Literal["map", "max", "none"] = "map"
    """`map`: one vector per image by multihead attention pooling (SigLIP); `max`: the elementwise max over
    the patch tokens (a small object is not averaged away among background tokens; not exportable to
    Hugging Face); `none`: all patch tokens (the captioner)."""
    shape_stem: bool = False
    """Add a colour-invariant path to shape: the image's edge map (Sobel gradient magnitude over the
    colour channels, scaled to max 1 per image) through a small convolutional stem, summed into each
    patch embedding (`vision_lm/vit.py` EdgeStem). Hugging Face's SigLIP has no such part: a model
    with it cannot be exported."""

    stem: Literal["patch", "conv", "factored"] = "patch"
    """How pixels become patch tokens. `patch`: one linear map per P x P patch (ViT, Hugging Face's SigLIP).
    `conv`: log2(P) 3x3 stride-2 convolutions with GELU, then a 1x1 to dim (Xiao et al. 2021, "Early
    convolutions help transformers see better"): overlapping, translation-equivariant filters, so a shape
    looks the same wherever the patch grid cuts it. Measured (BENCHMARKS.md, issue 13): a small gain in
    shape learning (0.33 -> 0.42 in 200 supervised steps) where `pooling: max` gives 0.82; off by default.
    `factored`: per-pixel colour features averaged over each patch plus the edge map through convolutions
    (`vision_lm/vit.py` FactoredStem): no filter sees colour and form together, so shape learnt on some
    colours transfers to others (told the shape directly, held-out colour-shape pairs 0.11 -> 0.75, and 0.99
    with the training-only colours; BENCHMARKS.md, issue 13). Not exportable to Hugging Face."""

    def __post_init__(self):
        check_positive("vision.", self, ("image_size", "patch_size"))
        if self.stem not in ("patch", "conv", "factored"):
            raise UserError(f"vision.stem must be 'patch', 'conv' or 'factored', got {self.stem!r}")
        if (self.shape_stem or self.stem != "patch") and self.patch_size & (self.patch_size - 1):
            raise UserError(
                f"vision.shape_stem and vision.stem {self.stem} need a power-of-two vision.patch_size, "
                f"got {self.patch_size}"
            )
        if self.image_size % self.patch_size:
            raise UserError(
                f"vision.patch_size={self.patch_size} must divide vision.image_size={self.image_size}"
            )
        if self.pooling not in ("map", "max", "none"):
            raise UserError(f"vision.pooling must be 'map', 'max' or 'none', got {self.pooling!r}")
        self.hidden_dim = self.transformer().hidden_dim  # validates the stack; stores 4 * dim for None

    def hf_unsupported(self) -> list[str]:
        """The options Hugging Face's SigLIP vision tower cannot represent, by field name (exports refuse them)."""
        return (
            ["vision.shape_stem"] * self.shape_stem
            + ["vision.stem"] * (self.stem != "patch")
            + ["vision.pooling"] * (self.pooling == "max")
        )

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.image_size // self.patch_size

    @property
    def n_patches(self) -> int:
        return self.grid**2

    def transformer(self) -> TransformerConfig:
        """The tower's stack, over the n_patches patch tokens."""
        c = self
        return _tower("vision.", c.dim, c.n_layers, c.n_heads, c.hidden_dim, c.norm_eps, c.n_patches)


@dataclass
class TextTowerConfig:
    """The text tower: tokens + learned positions -> Transformer -> last position -> Linear."""

    vocab_size: int = 512
    """Embedding rows; at least the tokenizer's vocabulary (specials included)."""
    max_len: int = 16
    """Caption length in tokens: captions are padded (or cut) to exactly this length."""
    dim: int = 128
    """Width of the tower."""
    n_layers: int = 4
    """Transformer blocks."""
    n_heads: int = 4
    """Attention heads (must divide dim)."""
    hidden_dim: int | None = None
    """MLP hidden size (None: 4 * dim)."""
    norm_eps: float = 1e-6
    """LayerNorm epsilon."""
    pooling: Literal["last", "mean"] = "last"
    """`last`: the hidden state at position max_len - 1 (Hugging Face's SiglipTextModel); `mean`: the mean over
    all max_len positions, which keeps each word's own state in the sum, so a caption's vector is nearer the
    sum of its words'. Measured (BENCHMARKS.md, issue 13): it did not speed up composition at 1000 steps, and
    at 3000 steps `last` composes; an experiment option. Not exportable to Hugging Face."""

    def __post_init__(self):
        check_positive("text.", self, ("vocab_size", "max_len"))
        if self.pooling not in ("last", "mean"):
            raise UserError(f"text.pooling must be 'last' or 'mean', got {self.pooling!r}")
        self.hidden_dim = self.transformer().hidden_dim  # validates the stack; stores 4 * dim for None

    def transformer(self) -> TransformerConfig:
        """The tower's stack, over max_len caption tokens."""
        c = self
        return _tower("text.", c.dim, c.n_layers, c.n_heads, c.hidden_dim, c.norm_eps, c.max_len)


@dataclass
class SigLIPConfig(ModelConfig):
    """Two towers embedding images and texts in one space, trained by a pairwise loss."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    """The image tower."""
    text: TextTowerConfig = field(default_factory=TextTowerConfig)
    """The text tower."""
    embed_dim: int | None = None
    """Shared embedding size (None: vision.dim, the HF layout; another value adds an image projection,
    which Hugging Face's SiglipModel lacks, so such a model cannot be exported)."""
    loss: Literal["sigmoid", "softmax"] = "sigmoid"
    """`sigmoid`: SigLIP's pairwise loss (Zhai et al. 2023); `softmax`: CLIP's (Radford et al. 2021)."""
    init_t: float = math.log(10)
    """Initial log-scale t: logits = exp(t) * cos + b (SigLIP: log 10; CLIP's softmax: log(1/0.07))."""
    init_b: float = -10.0
    """Initial bias b: with one positive per row among B, a strongly negative start keeps the loss
    from spending its first steps pushing down the B - 1 negatives (SigLIP: -10)."""
    name: str = field(default="siglip-tiny", compare=False)
    """Run name (the log folder's name)."""

    PRESETS: ClassVar[dict[str, dict]] = PRESETS

    def __post_init__(self):
        super().__post_init__()  # tower dicts become VisionConfig / TextTowerConfig
        if self.embed_dim is None:
            self.embed_dim = self.vision.dim
        check_positive("", self, ("embed_dim",))
        if self.loss not in ("sigmoid", "softmax"):
            raise UserError(f"loss must be 'sigmoid' or 'softmax', got {self.loss!r}")
        if self.vision.pooling not in ("map", "max"):
            raise UserError("vision.pooling must be 'map' or 'max' for SigLIP (one vector per image)")
        for name in ("init_t", "init_b"):
            if not math.isfinite(getattr(self, name)):
                raise UserError(f"{name} must be a finite number, got {getattr(self, name)}")

    def hf_unsupported(self) -> list[str]:
        """The options Hugging Face's SigLIP cannot represent, by field name (exports refuse them)."""
        return self.vision.hf_unsupported() + ["text.pooling"] * (self.text.pooling != "last")

    @property
    def has_image_projection(self) -> bool:
        return self.embed_dim != self.vision.dim
