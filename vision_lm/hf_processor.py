"""Processor files for the vision exports, so `transformers.AutoProcessor.from_pretrained(DIR)` turns an image and
text into exactly the inputs our models were trained on.

Image side (`preprocessor_config.json`, `SiglipImageProcessor`): RGB, bicubic resize to the square
`image_size` (aspect ratio not kept), x / 255, then (x - 0.5) / 0.5, as `vision_lm/records.py`
does. Pillow's and torchvision's bicubic kernels differ slightly, so an image that needs resizing
gives pixels equal to ours within a few 1/255 steps; one already at `image_size` gives the same.

Text side (the tokenizer files of `shared/tokenizer/hf_format.py`, plus):
- SigLIP: the text tower reads `text <|eos|>` padded with `<|pad|>` to `max_len`
  (`TextEncoder.caption`), so the tokenizer appends `<|eos|>` (a post-processor) and the
  processor is called with `padding="max_length", max_length=max_len`;
- PaliGemma: Hugging Face's processor writes `<image> * N <bos> prompt \\n`, where we train on
  `<image tokens> <|bos|> prompt <|sep|>`: the export's tokenizer maps the text "\\n" to the id
  of `<|sep|>` (an added token), so the prompt the processor builds is our prefix, id for id.
"""

from __future__ import annotations

import os
from pathlib import Path

from shared.io import write_json_atomic
from shared.tokenizer import Tokenizer
from shared.tokenizer.hf_format import hf_tokenizer_config, to_hf_tokenizer


def image_processor_config(image_size: int, image_seq_length: int | None = None) -> dict:
    cfg = {
        "image_processor_type": "SiglipImageProcessor",
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"height": image_size, "width": image_size},
        "resample": 3,  # PIL bicubic
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }
    if image_seq_length is not None:
        cfg["image_seq_length"] = image_seq_length  # PaliGemmaProcessor reads it here
    return cfg


def write_siglip_processor(tok: Tokenizer, folder: str | os.PathLike, image_size: int, max_len: int) -> None:
    """`SiglipProcessor` files: image processor, a tokenizer that appends `<|eos|>`, the processor class."""
    folder = Path(folder)
    d = to_hf_tokenizer(tok)
    eos = "<|eos|>"
    d["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": eos, "type_id": 0}}],
        "pair": [
            {"Sequence": {"id": "A", "type_id": 0}},
            {"Sequence": {"id": "B", "type_id": 1}},
            {"SpecialToken": {"id": eos, "type_id": 1}},
        ],
        "special_tokens": {eos: {"id": eos, "ids": [tok.eos_id], "tokens": [eos]}},
    }
    write_json_atomic(folder / "tokenizer.json", d)
    cfg = hf_tokenizer_config(tok, max_len)
    cfg["model_input_names"] = [
        "input_ids"
    ]  # no attention_mask: the tower attends to the padding, as SigLIP's
    write_json_atomic(folder / "tokenizer_config.json", cfg)
    write_json_atomic(folder / "preprocessor_config.json", image_processor_config(image_size))
    write_json_atomic(folder / "processor_config.json", {"processor_class": "SiglipProcessor"})


def write_paligemma_processor(
    tok: Tokenizer, folder: str | os.PathLike, image_size: int, n_image_tokens: int, max_len: int
) -> None:
    """`PaliGemmaProcessor` files: image processor with `image_seq_length`, a tokenizer where "\\n" is `<|sep|>`."""
    folder = Path(folder)
    d = to_hf_tokenizer(tok)
    sep = tok.token_id("<|sep|>")
    for t in d["added_tokens"]:
        if t["id"] == sep:
            t.update(content="\n", special=False)
    cfg = hf_tokenizer_config(tok, n_image_tokens + max_len)
    cfg["added_tokens_decoder"][str(sep)].update(content="\n", special=False)
    cfg["add_bos_token"] = False
    write_json_atomic(folder / "tokenizer.json", d)
    write_json_atomic(folder / "tokenizer_config.json", cfg)
    write_json_atomic(folder / "preprocessor_config.json", image_processor_config(image_size, n_image_tokens))
    write_json_atomic(folder / "processor_config.json", {"processor_class": "PaliGemmaProcessor"})
