"""The captioner against itself: masks, the suffix-only loss, cached and batched generation."""

import pytest
import torch

from shared.nn.masks import prefix_lm_mask, with_key_padding
from vision_lm.caption_generate import generate
from vision_lm.paligemma import PaliGemma, suffix_loss
from vision_lm.paligemma_config import DecoderConfig, PaliGemmaConfig
from vision_lm.text_batch import TextEncoder


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = PaliGemmaConfig(
        decoder=DecoderConfig(vocab_size=64, max_len=12, dim=32, n_layers=2, n_heads=4, n_kv_heads=2),
        zero_init_projector=False,  # the image must matter for the tests to mean anything
    )
    config.vision.image_size, config.vision.patch_size, config.vision.dim, config.vision.n_layers = (
        16,
        8,
        32,
        1,
    )
    m = PaliGemma(PaliGemmaConfig.from_dict(config.to_dict())).eval()
    with torch.no_grad():  # RMSNorm gains away from 1 and larger weights: sharper, more varied logits
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m


def test_mask_worked_examples():
    """The two examples of shared/nn/masks.py's docstring."""
    m = prefix_lm_mask(torch.tensor([3]), 5)[0, 0].int()
    assert m.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    keep = torch.tensor([[1, 0, 1, 1, 1]]).bool()  # image, <pad>, prompt, then one generated token
    m = with_key_padding(prefix_lm_mask(torch.tensor([4]), 5), keep)[0, 0].int()
    assert m.tolist() == [[1, 0, 1, 1, 0], [1, 0, 1, 1, 0], [1, 0, 1, 1, 0], [1, 0, 1, 1, 0], [1, 0, 1, 1, 1]]


def test_loss_counts_only_suffix_predictions():
    torch.manual_seed(0)
    ids = torch.randint(0, 10, (2, 6))
    loss_mask = torch.tensor([[0, 0, 0, 1, 1, 0], [0, 0, 1, 1, 1, 1]]).bool()
    logits = torch.randn(2, 6, 10, requires_grad=True)
    loss = suffix_loss(logits, ids, loss_mask)
    loss.backward()
    scored = logits.grad.abs().sum(-1) > 0  # positions whose logits reach the loss
    assert scored.tolist() == [[0, 0, 1, 1, 0, 0], [0, 1, 1, 1, 1, 0]]  # each suffix id's predecessor
    pairs = [(0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (1, 4)]
    manual = torch.stack([torch.nn.functional.cross_entropy(logits[b, t], ids[b, t + 1]) for b, t in pairs])
    torch.testing.assert_close(loss, manual.mean())


def test_model_loss_ignores_image_and_prefix_positions(model):
    """Changing a prefix token changes the suffix logits (it is attended) but is never a target."""
    torch.manual_seed(1)
    pixels, ids = torch.randn(1, 3, 16, 16), torch.randint(0, 60, (1, 8))
    prefix_len, loss_mask = torch.tensor([4]), torch.tensor([[0, 0, 0, 0, 1, 1, 1, 0]]).bool()
    logits = model(pixels, ids, prefix_len)
    other = ids.clone()
    other[0, 1] = (ids[0, 1] + 1) % 60  # a prompt token: not a target
    ref = logits.detach().clone()
    ref[:, :3] = 0  # logits at image/prefix positions other than <|sep|> do not enter the loss
    assert suffix_loss(logits, ids, loss_mask) == suffix_loss(ref, ids, loss_mask)
    assert not torch.allclose(model(pixels, other, prefix_len)[:, 4:], logits[:, 4:])  # bidirectional prefix


def test_prefix_is_bidirectional_and_suffix_causal(model):
    torch.manual_seed(2)
    pixels, ids, prefix_len = torch.randn(1, 3, 16, 16), torch.randint(0, 60, (1, 8)), torch.tensor([4])
    base = model(pixels, ids, prefix_len)
    late_prefix, late_suffix = ids.clone(), ids.clone()
    late_prefix[0, 3] = (ids[0, 3] + 1) % 60
    late_suffix[0, 6] = (ids[0, 6] + 1) % 60
    assert not torch.allclose(model(pixels, late_prefix, prefix_len)[:, 0], base[:, 0])  # sees ahead
    torch.testing.assert_close(model(pixels, late_suffix, prefix_len)[:, :6], base[:, :6])  # never ahead


def prompts():
    return [[1, 5, 9, 2], [1, 7, 2], [1, 3, 4, 8, 11, 2]]


def test_cached_generation_equals_uncached(model):
    torch.manual_seed(3)
    pixels = torch.randn(3, 3, 16, 16)
    cached = generate(model, pixels, prompts(), 10, eos_id=63)
    slow = generate(model, pixels, prompts(), 10, eos_id=63, use_cache=False)
    assert cached == slow and all(len(c) == 10 for c in cached)  # eos 63 is never likely: full length
    assert len({tuple(c) for c in cached}) == 3


def test_batched_generation_equals_one_by_one(model):
    torch.manual_seed(4)
    pixels = torch.randn(3, 3, 16, 16)
    batched = generate(model, pixels, prompts(), 10, eos_id=63)
    alone = [generate(model, pixels[i : i + 1], [p], 10, eos_id=63)[0] for i, p in enumerate(prompts())]
    assert batched == alone


def test_sampling_is_seeded_and_stops_at_eos(model):
    pixels = torch.randn(2, 3, 16, 16)
    runs = [
        generate(model, pixels, prompts()[:2], 10, eos_id=63, temperature=1.0, top_k=20, top_p=0.9,
                 generator=torch.Generator().manual_seed(0))
        for _ in range(2)
    ]  # fmt: skip
    assert runs[0] == runs[1]
    first = generate(model, pixels, prompts()[:2], 1, eos_id=63)
    eos = first[0][0] if first[0] else 63
    stopped = generate(model, pixels, prompts()[:2], 10, eos_id=eos)
    assert stopped[0] == []  # row 0's first greedy token is now <|eos|>: nothing is returned


def test_vision_tower_runs_once_per_generation(model):
    calls = []
    hook = model.vision.register_forward_hook(lambda *_: calls.append(1))
    try:
        generate(model, torch.randn(2, 3, 16, 16), prompts()[:2], 8, eos_id=63)
    finally:
        hook.remove()
    assert calls == [1]


def test_training_works_after_generating_past_the_rope_table():
    """Validation generates past max_seq_len (the RoPE tables grow); training must go on afterwards."""
    config = PaliGemmaConfig(decoder=DecoderConfig(vocab_size=64, max_len=4, dim=32, n_layers=1, n_heads=2))
    config.vision.image_size, config.vision.patch_size, config.vision.dim, config.vision.n_layers = (
        16,
        8,
        32,
        1,
    )
    m = PaliGemma(PaliGemmaConfig.from_dict(config.to_dict()))
    pixels, ids = torch.randn(2, 3, 16, 16), torch.randint(0, 60, (2, 4))
    generate(m, pixels, prompts()[:2], 12, eos_id=63)  # 4 image + 4 prompt + 12 > 4 + 4 positions
    suffix_loss(m(pixels, ids, torch.tensor([2, 2])), ids, torch.ones(2, 4, dtype=torch.bool)).backward()


def test_text_layout_round_trips_through_generation_prompt():
    from shared.tokenizer import Tokenizer
    from vision_lm.caption_generate import prompt_ids

    tok = Tokenizer.train(["caption en", "a small red circle"], 270, progress=False)
    ids, n, _ = TextEncoder(tok, 16).prefix_suffix("caption en", "a small red circle")
    assert prompt_ids(tok, "caption en") == ids[:n]


def test_banned_ids_are_never_generated_and_change_nothing_else(model):
    pixels = torch.randn(2, 3, 16, 16)
    free = generate(model, pixels, prompts()[:2], 8, eos_id=None)
    banned = sorted({t for row in free for t in row[:3]})  # the first tokens the model picks on its own
    constrained = generate(model, pixels, prompts()[:2], 8, eos_id=None, banned_ids=banned)
    assert all(t not in banned for row in constrained for t in row)
    n = model.config.n_image_tokens + len(prompts()[0])
    with torch.no_grad():  # the reference: the uncached prefill logits of the first (unpadded) prompt
        x = torch.cat([model.encode_image(pixels), model.embed_text(torch.tensor([prompts()[0]] * 2))], 1)
        logits = model.decode(x, prefix_lm_mask(torch.full((2,), n), n))[:, -1]  # (2, V)
    expected = logits.index_fill(-1, torch.tensor(banned), float("-inf")).argmax(-1)[0].item()
    assert constrained[0][0] == expected  # the best allowed id, the same forward otherwise


def test_contrastive_scores_lift_what_the_image_adds_within_the_plausible_tokens():
    from vision_lm.caption_generate import contrastive_logits

    with_image = torch.tensor([[0.5, 0.4, 0.1]]).log()  # the image: "circle" (0) a little over "square" (1)
    without = torch.tensor([[0.9, 0.05, 0.05]]).log()  # the text alone ("green ...") says circle
    assert contrastive_logits(with_image, without, 0.0).argmax().item() == 0  # alpha 0: the plain decoder
    score = contrastive_logits(with_image, without, 1.0, beta=0.1)
    assert score.argmax().item() == 1  # 2 log 0.4 - log 0.05 > 2 log 0.5 - log 0.9
    assert torch.allclose(score[0, :2], 2 * with_image[0, :2] - without[0, :2])
    assert contrastive_logits(with_image, without, 1.0, beta=0.85)[0, 1] == float("-inf")  # 0.4 < 0.85 * 0.5
    assert contrastive_logits(with_image, without, 1.0, beta=0.3)[0, 2] == float("-inf")  # 0.1 < 0.3 * 0.5


def test_contrastive_generation_matches_a_slow_reference(model):
    """Each step against two uncached teacher-forced passes (with the image; with zero image tokens)."""
    from vision_lm.caption_generate import contrastive_logits

    torch.manual_seed(5)
    pixels = torch.randn(3, 3, 16, 16)
    fast = generate(model, pixels, prompts(), 6, eos_id=63, contrast=1.5, plausibility=0.05)
    img = model.encode_image(pixels)
    for b, prompt in enumerate(prompts()):
        ids = list(prompt)
        for _ in range(6):
            x = torch.tensor([ids])
            with torch.no_grad():
                lp = [model(None, x, torch.tensor([len(prompt)]), image_tokens=t)[:, -1]
                      for t in (img[b : b + 1], torch.zeros_like(img[b : b + 1]))]  # fmt: skip
            ids.append(int(contrastive_logits(*lp, 1.5, 0.05).argmax()))
        assert fast[b] == ids[len(prompt) :]
    plain = generate(model, pixels, prompts(), 6, eos_id=63)
    assert generate(model, pixels, prompts(), 6, eos_id=63, contrast=1e-9) == plain  # the doubled batch alone
    assert fast != plain  # the prior's weight changes what the random model says
    slow = generate(model, pixels, prompts(), 6, eos_id=63, contrast=1.5, plausibility=0.05, use_cache=False)
    assert slow == fast
