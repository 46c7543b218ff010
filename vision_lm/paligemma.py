"""PaliGemma (Beyer et al. 2024): a SigLIP image tower feeding a Gemma decoder through one Linear.

    pixels (B, 3, H, W) -> VisionTower, no pooling -> (B, N, Dv) patch tokens
      -> projector Linear(Dv, D)                   -> (B, N, D) image tokens, NOT scaled
    ids (B, T) = <|bos|> prefix <|sep|> suffix <|eos|> <|pad|>...
      -> embedding * sqrt(D)                       -> (B, T, D) text tokens
    [image tokens ; text tokens] (B, N + T, D) -> shared Transformer under the prefix-LM mask
      -> tied head (logits = h @ E^T)              -> (B, T, V) logits at the text positions

Prefix-LM (`shared/nn/masks.py`): the image and the prompt attend to each other in both
directions, so the image tokens can already be read "in the light of" the question; the
suffix is causal, and only suffix tokens are predicted (`suffix_loss`). Compared with a
plain decoder (GPT-2, Llama) only the input (image tokens before the text) and the mask
differ. Gemma multiplies token embeddings by sqrt(D) so that small, tied embeddings give
inputs of unit size; the projected image tokens enter as they are (HF puts them in after
its scaled embedding layer, as we do).

Shapes: B batch, N image tokens, T text tokens, L = N + T, D decoder width, Dv tower width,
V vocabulary.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from shared.nn.kv_cache import KVCache
from shared.nn.masks import prefix_lm_mask
from shared.nn.transformer import Transformer
from vision_lm.paligemma_config import PaliGemmaConfig
from vision_lm.vit import VisionTower


class PaliGemma(nn.Module):
    def __init__(self, config: PaliGemmaConfig):
        super().__init__()
        self.config = config
        d = config.decoder
        self.vision = VisionTower(config.vision)  # initialises itself
        self.projector = nn.Linear(config.vision.dim * len(config.vision_feature_layers), d.dim, bias=True)
        self.embed = nn.Embedding(d.vocab_size, d.dim)
        self.decoder = Transformer(config.transformer())  # initialises itself (shared/nn/init.py)
        self.lm_head = nn.Linear(d.dim, d.vocab_size, bias=False)
        self.lm_head.weight = self.embed.weight  # tied, as Gemma
        self.embed_scale = math.sqrt(d.dim)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Outside the tower and the stack (which initialise themselves):

        | parameter         | initialisation                                                      |
        |-------------------|---------------------------------------------------------------------|
        | embed (= lm_head) | normal(0, 1/sqrt(D)): times sqrt(D), text inputs have unit variance   |
        | projector         | zeros if `zero_init_projector` (big_vision), else normal(0, 1/sqrt(Dv)) |
        """
        nn.init.normal_(self.embed.weight, 0.0, 1 / math.sqrt(self.config.decoder.dim))
        if self.config.zero_init_projector:
            nn.init.zeros_(self.projector.weight)
        else:
            nn.init.normal_(self.projector.weight, 0.0, 1 / math.sqrt(self.projector.in_features))
        nn.init.zeros_(self.projector.bias)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (B, 3, H, W) in [-1, 1] -> (B, N, D) image tokens (run once per image, even when decoding)."""
        return self.projector(self.vision(pixels, self.config.vision_feature_layers))

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T) -> (B, T, D) = embedding * sqrt(D), the scale cast to the weights' dtype as in HF Gemma."""
        w = self.embed.weight
        return self.embed(ids) * torch.tensor(self.embed_scale, dtype=w.dtype, device=w.device)

    def decode(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        kv_caches: list[KVCache] | None = None,
        start_pos: int = 0,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Embeddings x (B, T, D) -> logits (B, T, V); the arguments are those of `Transformer.forward`."""
        return self.lm_head(self.decoder(x, mask, kv_caches, start_pos, positions).hidden)

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        prefix_len: torch.Tensor,
        image_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Teacher-forced logits (B, T, V) at the text positions.

        input_ids (B, T) in the layout of `vision_lm/text_batch.py`, right-padded; prefix_len (B,)
        counts its prefix ids (<|bos|> prompt <|sep|>). image_tokens: `encode_image`'s output, to
        reuse. Padding needs no key mask: pads come last, so no real position ever attends to one.
        """
        img = self.encode_image(pixel_values) if image_tokens is None else image_tokens  # (B, N, D)
        txt = self.embed_text(input_ids)  # (B, T, D)
        x = torch.cat([img.to(txt.dtype), txt], dim=1)  # (B, L, D)
        n = img.shape[1]
        mask = prefix_lm_mask(prefix_len.to(x.device) + n, x.shape[1])  # (B, 1, L, L)
        return self.decode(x, mask)[:, n:]  # (B, T, V)

    def make_kv_caches(self, batch_size: int, max_len: int, dtype=None) -> list[KVCache]:
        return self.decoder.make_kv_caches(batch_size, max_len, dtype=dtype)

    def num_params(self) -> int:
        """Parameters, the tied embedding once."""
        return sum(p.numel() for p in self.parameters())


def suffix_loss(
    logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean next-token cross-entropy over the suffix tokens only (weighted by `weight` (B, T), per id).

    logits (B, T, V) at the text positions, input_ids (B, T), loss_mask (B, T) True on the
    suffix ids (answer + <|eos|>). Position t predicts id t + 1, so the first suffix id is
    predicted from <|sep|>, the last prefix position; image, prompt and padding positions
    contribute nothing.
    """
    target_mask = loss_mask[:, 1:]  # (B, T - 1): which next ids are scored
    pred = logits[:, :-1][target_mask]  # (M, V)
    target = input_ids[:, 1:][target_mask]  # (M,)
    if weight is None:
        return F.cross_entropy(pred.float(), target)
    w = weight[:, 1:][target_mask].float()  # (M,)
    return (F.cross_entropy(pred.float(), target, reduction="none") * w).sum() / w.sum()
