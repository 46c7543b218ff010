"""Vision exports load with their processors: `AutoProcessor.from_pretrained(DIR)` gives our inputs, and
transformers' own zero-shot scoring and caption generation on a test image give our answers."""

from __future__ import annotations

import pytest
import torch

from shared.tokenizer import Tokenizer
from vision_lm.caption_generate import generate
from vision_lm.config import SigLIPConfig
from vision_lm.hf_processor import write_paligemma_processor, write_siglip_processor
from vision_lm.paligemma import PaliGemma
from vision_lm.paligemma_config import PaliGemmaConfig
from vision_lm.records import image_tensor, normalize
from vision_lm.shapes import example
from vision_lm.siglip import SigLIP
from vision_lm.text_batch import CAPTION_PREFIX, TextEncoder

transformers = pytest.importorskip("transformers")
# transformers' PaliGemma processor hands a PIL image to numpy the old way (harmless, not ours).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
TEXTS = ["a small red circle", "a large blue square left of a green triangle", "what color is the circle?"]


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(
        [" ".join(TEXTS * 20), "answer en caption en yellow purple star"], 320, progress=False
    )


def test_siglip_processor_and_model_give_our_logits(tok, tmp_path):
    from vision_lm.hf_siglip import save_hf

    torch.manual_seed(0)
    cfg = SigLIPConfig.preset("siglip-tiny")
    model = SigLIP(cfg).eval()
    save_hf(
        model,
        tmp_path,
        token_ids={"pad_token_id": tok.pad_id, "bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id},
    )
    write_siglip_processor(tok, tmp_path, cfg.vision.image_size, cfg.text.max_len)

    img, _ = example(seed=3, split="test", index=0, image_size=cfg.vision.image_size)
    labels = ["a small red circle", "a large blue square", "a green triangle"]
    processor = transformers.AutoProcessor.from_pretrained(tmp_path)
    inputs = processor(
        text=labels, images=img, padding="max_length", max_length=cfg.text.max_len, return_tensors="pt"
    )
    encoder = TextEncoder(tok, cfg.text.max_len)
    pixels = normalize(image_tensor(img, cfg.vision.image_size))[None]
    assert inputs["input_ids"].tolist() == encoder.captions(labels).tolist()
    torch.testing.assert_close(inputs["pixel_values"], pixels, atol=1e-6, rtol=0)

    hf = transformers.SiglipModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        theirs = hf(**inputs).logits_per_image  # (1, 3)
        ours = model.logits(model.encode_image(pixels), model.encode_text(encoder.captions(labels)))
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)


def test_paligemma_processor_and_generate_give_our_caption(tok, tmp_path):
    from vision_lm.hf_paligemma import save_hf

    torch.manual_seed(0)
    cfg = PaliGemmaConfig(decoder={"vocab_size": tok.vocab_size})
    model = PaliGemma(cfg).eval()
    with torch.no_grad():  # untrained, tied weights repeat the last token; larger random ones say more
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    ids = {"pad_token_id": tok.pad_id, "bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id,
           "image_token_index": tok.special_tokens["<image>"]}  # fmt: skip
    save_hf(model, tmp_path, token_ids=ids)
    write_paligemma_processor(tok, tmp_path, cfg.vision.image_size, cfg.n_image_tokens, cfg.decoder.max_len)

    img, _ = example(seed=3, split="test", index=1, image_size=cfg.vision.image_size)
    processor = transformers.AutoProcessor.from_pretrained(tmp_path)
    inputs = processor(text=CAPTION_PREFIX, images=img, return_tensors="pt")
    prefix = [tok.bos_id, *tok.encode(CAPTION_PREFIX), tok.token_id("<|sep|>")]
    assert inputs["input_ids"][0, cfg.n_image_tokens :].tolist() == prefix

    pixels = normalize(image_tensor(img, cfg.vision.image_size))[None]
    ours = generate(model, pixels, [prefix], 12, tok.eos_id, tok.pad_id)[0]
    hf = transformers.PaliGemmaForConditionalGeneration.from_pretrained(tmp_path).eval()
    out = hf.generate(**inputs, max_new_tokens=12, do_sample=False)[
        0, inputs["input_ids"].shape[1] :
    ].tolist()
    theirs = out[: out.index(tok.eos_id)] if tok.eos_id in out else out
    assert len(set(ours)) > 3 and theirs == ours
    assert processor.decode(theirs, skip_special_tokens=True) == tok.decode(ours)
