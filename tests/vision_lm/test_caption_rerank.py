"""SigLIP's choice among a caption's token substitutions (vision_lm/caption_rerank.py), against a slow
reference that scores every candidate alone, one forward pass each."""

import pytest
import torch

from shared.tokenizer import Tokenizer
from vision_lm.caption_rerank import substitution_search
from vision_lm.config import SigLIPConfig, TextTowerConfig, VisionConfig
from vision_lm.paligemma import PaliGemma
from vision_lm.paligemma_config import DecoderConfig, PaliGemmaConfig
from vision_lm.siglip import SigLIP
from vision_lm.text_batch import CAPTION_PREFIX, TextEncoder

TEXTS = ["a small red circle", "a large blue square left of a small red circle", "a big green star"]
TOWER = dict(image_size=16, patch_size=8, dim=32, n_layers=1, n_heads=2)


def sharpened(model):
    with torch.no_grad():  # larger weights: varied logits, so that the choices mean something
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    tok = Tokenizer.train([CAPTION_PREFIX, *TEXTS], 300, progress=False)
    decoder = DecoderConfig(
        vocab_size=320, max_len=32, dim=32, n_layers=2, n_heads=4, n_kv_heads=2
    )  # spare rows
    cap = sharpened(
        PaliGemma(PaliGemmaConfig(vision=VisionConfig(**TOWER), decoder=decoder, zero_init_projector=False))
    )
    text = TextTowerConfig(vocab_size=320, max_len=32, dim=32, n_layers=1, n_heads=2)
    sig = sharpened(SigLIP(SigLIPConfig(vision=VisionConfig(**TOWER), text=text)))
    return tok, cap, sig


def reference(
    tok, cap, sig, pixels, caption, top_k, form_weight, content_weight=0.0, contrast=0.0, as_read=None
):
    """One sweep for one image: every candidate encoded and scored on its own; SigLIP reads as_read(text)."""
    enc = TextEncoder(tok, cap.config.decoder.max_len)
    banned = [
        i
        for i in range(cap.config.decoder.vocab_size)
        if i >= tok.vocab_size or i in tok.special_tokens.values() and i != tok.eos_id
    ]

    def logprobs(text, blind=False):  # blind: zero image tokens (the decoder's prior)
        ids, p, _ = enc.prefix_suffix(CAPTION_PREFIX, text)
        tokens = torch.zeros_like(cap.encode_image(pixels)) if blind else None
        logits = cap(pixels, torch.tensor([ids]), torch.tensor([p]), image_tokens=tokens)[0].float()
        logits[:, banned] = float("-inf")
        n = len(enc.ids(text)) + 1  # the suffix with <|eos|>
        return ids, p, n, logits.log_softmax(-1)

    def after(text, i):  # log p of every suffix token after position i, <|eos|> included
        ids, p, n, logp = logprobs(text)
        return sum(float(logp[t - 1, ids[t]]) for t in range(p + i + 1, p + n))

    def at(text, i, blind=False):  # log p of suffix token i
        ids, p, n, logp = logprobs(text, blind)
        return float(logp[p + i - 1, ids[p + i]])

    def siglip_logit(text):
        ids = TextEncoder(tok, sig.config.text.max_len).captions(as_read([text]) if as_read else [text])
        return float(sig(pixels, ids).logits_per_image[0, 0])

    toks = enc.ids(caption)
    _, p, _, logp = logprobs(caption)
    scores = {caption: siglip_logit(caption)}
    for i in range(len(toks)):
        for a in logp[p - 1 + i].topk(top_k).indices.tolist():
            text = tok.decode(toks[:i] + [a] + toks[i + 1 :]).strip()
            if a == tok.eos_id or text in scores:
                continue
            form, content = after(text, i) - after(caption, i), at(text, i) - at(caption, i)
            if contrast:
                content = (1 + contrast) * content - contrast * (at(text, i, True) - at(caption, i, True))
            scores[text] = siglip_logit(text) + form_weight * form + content_weight * content
    return max(scores, key=scores.get)


@pytest.mark.parametrize(
    "form_weight, content_weight, contrast",
    [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (1.0, 0.5, 0.0), (1.0, 0.5, 2.0)],
)
def test_one_sweep_picks_what_the_slow_reference_picks(models, form_weight, content_weight, contrast):
    tok, cap, sig = models
    torch.manual_seed(1)
    pixels = torch.randn(3, 3, 16, 16)
    captions = TEXTS
    with torch.no_grad():
        got = substitution_search(
            cap, tok, sig, tok, pixels, pixels, captions, 3, 1, form_weight, content_weight, contrast
        )
        want = [
            reference(tok, cap, sig, pixels[b : b + 1], c, 3, form_weight, content_weight, contrast)
            for b, c in enumerate(captions)
        ]
    assert got == want
    assert got != captions  # random models disagree with the captions: something was substituted


def test_siglip_reads_the_candidates_as_read_gives_them(models):
    """A shape-first captioner's candidates go to SigLIP in the grammar's order (`LoadedCaptioner.readable`);
    here a word-order reversal, which changes every text, stands in for it."""
    tok, cap, sig = models
    torch.manual_seed(1)
    pixels = torch.randn(3, 3, 16, 16)
    as_read = lambda texts: [" ".join(reversed(t.split())) for t in texts]  # noqa: E731
    with torch.no_grad():
        got = substitution_search(cap, tok, sig, tok, pixels, pixels, TEXTS, 3, 1, 0.0, 0.0, as_read=as_read)
        plain = substitution_search(cap, tok, sig, tok, pixels, pixels, TEXTS, 3, 1, 0.0, 0.0)
        want = [
            reference(tok, cap, sig, pixels[b : b + 1], c, 3, 0.0, 0.0, as_read=as_read)
            for b, c in enumerate(TEXTS)
        ]
    assert got == want and got != plain  # what SigLIP reads changes its choice


def test_more_sweeps_never_lower_siglips_score_without_the_captioner_terms(models):
    tok, cap, sig = models
    torch.manual_seed(2)
    pixels = torch.randn(3, 3, 16, 16)
    enc = TextEncoder(tok, sig.config.text.max_len)

    def score(texts):
        with torch.no_grad():
            return torch.diagonal(sig(pixels, enc.captions(texts)).logits_per_image)

    with torch.no_grad():
        one = substitution_search(
            cap, tok, sig, tok, pixels, pixels, TEXTS, top_k=3, sweeps=1, form_weight=0.0, content_weight=0.0
        )
        three = substitution_search(
            cap, tok, sig, tok, pixels, pixels, TEXTS, top_k=3, sweeps=3, form_weight=0.0, content_weight=0.0
        )
    assert (score(one) >= score(TEXTS)).all() and (score(three) >= score(one) - 1e-5).all()
