"""SigLIP (Zhai et al. 2023): an image tower and a text tower scored by a sigmoid per pair.

    u = normalize(image_tower(image)),  v = normalize(text_tower(text))     unit vectors (E,)
    logit(image, text) = exp(t) * <u, v> + b                               t, b learned

CLIP (Radford et al. 2021) turns each row of the B x B logit matrix into a softmax over
the batch. SigLIP instead asks every pair a yes/no question: sigmoid(logit) = "is this
the image's caption?". The formula is `vision_lm.losses.pair_logits`, used by `SigLIP.logits`
and by the losses alike. The loss (`vision_lm/losses.py`) needs no normalisation over the
batch, so it is cheap to split across devices and works at small batch sizes too.
t starts at log 10 and b at -10: with B - 1 negatives per positive, a strongly negative
bias starts the model near the right prior instead of spending early steps learning it.

Shapes: B batch, E embedding size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vision_lm.config import SigLIPConfig
from vision_lm.losses import contrastive_loss, pair_logits
from vision_lm.text_tower import TextTower
from vision_lm.vit import VisionTower


@dataclass
class SigLIPOutput:
    image_embeds: torch.Tensor
    """(B, E) unit vectors."""
    text_embeds: torch.Tensor
    """(B, E) unit vectors."""
    logits_per_image: torch.Tensor
    """(B_images, B_texts) = exp(t) * cos + b, in fp32."""


class SigLIP(nn.Module):
    def __init__(self, config: SigLIPConfig):
        super().__init__()
        self.config = config
        self.vision = VisionTower(config.vision)
        self.text = TextTower(config.text, config.embed_dim)
        self.image_proj = (
            nn.Linear(config.vision.dim, config.embed_dim, bias=False)
            if config.has_image_projection
            else None
        )
        self.logit_scale = nn.Parameter(torch.empty(1))  # t: cosines are multiplied by exp(t)
        self.logit_bias = nn.Parameter(torch.empty(1))  # b: added to every logit
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """The towers initialise themselves (`VisionTower.init_weights`, `TextTower.init_weights`,
        `shared/nn/init.py`); here: t = config.init_t (log 10), b = config.init_b (-10) and the
        optional image projection normal(0, 0.02)."""
        self.logit_scale.fill_(self.config.init_t)
        self.logit_bias.fill_(self.config.init_b)
        if self.image_proj is not None:
            nn.init.normal_(self.image_proj.weight, 0.0, 0.02)

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """pixels (B, 3, H, W) in [-1, 1] -> (B, E)."""
        x = self.vision(pixels)  # (B, D)
        if self.image_proj is not None:
            x = self.image_proj(x)  # (B, E)
        return F.normalize(x.float(), dim=-1) if normalize else x

    def encode_text(self, ids: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """ids (B, max_len) padded captions -> (B, E)."""
        x = self.text(ids)
        return F.normalize(x.float(), dim=-1) if normalize else x

    def logits(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """Unit vectors (Bi, E), (Bt, E) -> (Bi, Bt) logits exp(t) * cos + b, in fp32 (`pair_logits`)."""
        return pair_logits(image_embeds, text_embeds, self.logit_scale, self.logit_bias)

    def loss(
        self,
        out: SigLIPOutput,
        text_ids: torch.Tensor | None = None,
        across_ranks: bool = True,
    ) -> torch.Tensor:
        """The `config.loss` loss of a forward's embeddings over the global batch, as seen from this
        rank: under DDP against every rank's texts (`vision_lm.losses.contrastive_loss`), so
        `out.logits_per_image`, this rank's (B, B) block alone, is not what it scores.

        text_ids (B, T): identical captions count as matches (sigmoid loss); None: only the diagonal.
        across_ranks=False: the local batch alone (evaluation, where batches may differ in size).
        """
        return contrastive_loss(
            self.config.loss,
            out.image_embeds,
            out.text_embeds,
            self.logit_scale,
            self.logit_bias,
            text_ids,
            across_ranks,
        )

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor) -> SigLIPOutput:
        img, txt = self.encode_image(pixels), self.encode_text(ids)
        return SigLIPOutput(img, txt, self.logits(img, txt))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
