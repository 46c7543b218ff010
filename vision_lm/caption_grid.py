"""`samples/captions`: a TensorBoard image of a few validation images with their generated texts.

One row per example: the image (enlarged 2x, nearest neighbour, so shapes stay crisp), the
prompt, the generated text (green when it equals the truth, red otherwise) and the truth.
"""

from __future__ import annotations

import textwrap

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

TEXT_WIDTH = 360
CHARS_PER_LINE = 56
LINE_HEIGHT = 12


def caption_grid(
    pixels: torch.Tensor, prompts: list[str], preds: list[str], truths: list[str]
) -> torch.Tensor:
    """pixels (K, 3, S, S) in [-1, 1] and K texts each -> (3, H, W) float image in [0, 1]."""
    font = ImageFont.load_default()
    side = 2 * pixels.shape[-1]
    rows = []
    for px, prompt, pred, truth in zip(pixels, prompts, preds, truths):
        lines = [("prompt: " + prompt, (90, 90, 90))]
        colour = (20, 140, 40) if pred == truth else (200, 30, 30)
        lines += [
            (line, colour) for line in textwrap.wrap("generated: " + (pred or "(empty)"), CHARS_PER_LINE)
        ]
        lines += [(line, (0, 0, 0)) for line in textwrap.wrap("true: " + truth, CHARS_PER_LINE)]
        height = max(side, LINE_HEIGHT * len(lines) + 8)
        row = Image.new("RGB", (side + TEXT_WIDTH, height), (255, 255, 255))
        img = ((px.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
        row.paste(Image.fromarray(img).resize((side, side), Image.Resampling.NEAREST), (0, 0))
        draw = ImageDraw.Draw(row)
        for i, (text, fill) in enumerate(lines):
            draw.text((side + 6, 4 + i * LINE_HEIGHT), text, fill=fill, font=font)
        rows.append(np.asarray(row))
    grid = np.concatenate(rows, axis=0)  # (H, W, 3)
    return torch.from_numpy(grid).permute(2, 0, 1).float() / 255.0
