"""The sigmoid and softmax losses against their definitions, and their DDP form against one process."""

import math
import os
import socket

import pytest
import torch
import torch.nn.functional as F

from vision_lm.config import SigLIPConfig
from vision_lm.losses import clip_loss, contrastive_loss, siglip_loss
from vision_lm.siglip import SigLIP


def unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_sigmoid_loss_matches_the_double_loop():
    img, txt = unit(5, 8), unit(5, 8, seed=1)
    t, b = torch.tensor([1.3]), torch.tensor([-4.0])
    total = 0.0
    for i in range(5):
        for j in range(5):
            z = math.exp(1.3) * float(img[i] @ txt[j]) - 4.0
            y = 1.0 if i == j else -1.0
            total -= math.log(1 / (1 + math.exp(-y * z)))
    assert siglip_loss(img, txt, t, b).item() == pytest.approx(total / 5, rel=1e-5)


def test_sigmoid_loss_is_symmetric_in_images_and_texts():
    img, txt = unit(6, 8), unit(6, 8, seed=1)
    t, b = torch.tensor([2.3]), torch.tensor([-10.0])
    torch.testing.assert_close(siglip_loss(img, txt, t, b), siglip_loss(txt, img, t, b))


def test_same_captions_count_as_matches():
    img, txt = unit(4, 8), unit(4, 8, seed=1)
    ids = torch.tensor([[5, 6], [7, 8], [5, 6], [9, 9]])  # rows 0 and 2: the same caption
    t, b = torch.tensor([1.0]), torch.tensor([-2.0])
    pos = torch.eye(4, dtype=torch.bool)
    pos[0, 2] = pos[2, 0] = True
    expected = siglip_loss(img, txt, t, b, positives=pos)
    torch.testing.assert_close(contrastive_loss("sigmoid", img, txt, t, b, text_ids=ids), expected)
    assert not torch.allclose(expected, siglip_loss(img, txt, t, b))


def test_softmax_loss_is_clips():
    img, txt = unit(4, 8), unit(4, 8, seed=1)
    t = torch.tensor([math.log(1 / 0.07)])
    logits = (img @ txt.T) / 0.07
    y = torch.arange(4)
    expected = (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y)) / 2
    torch.testing.assert_close(clip_loss(img, txt, img, txt, t), expected)
    torch.testing.assert_close(contrastive_loss("softmax", img, txt, t, torch.tensor([0.0])), expected)


def test_t_and_b_receive_gradients_and_start_at_log10_and_minus10():
    torch.manual_seed(0)
    m = SigLIP(SigLIPConfig.preset("siglip-tiny", vision=dict(image_size=32, patch_size=8, dim=32, n_layers=1, n_heads=2),
                                   text=dict(vocab_size=50, max_len=6, dim=32, n_layers=1, n_heads=2)))  # fmt: skip
    assert m.logit_scale.item() == pytest.approx(math.log(10)) and m.logit_bias.item() == -10.0
    out = m(torch.randn(4, 3, 32, 32), torch.randint(0, 50, (4, 6)))
    siglip_loss(out.image_embeds, out.text_embeds, m.logit_scale, m.logit_bias).backward()
    assert m.logit_scale.grad.abs().item() > 0 and m.logit_bias.grad.abs().item() > 0
    assert m.vision.patch_embed.weight.grad.abs().sum() > 0 and m.text.token_embed.weight.grad.abs().sum() > 0


def grad(p):
    return p.grad if p.grad is not None else torch.zeros_like(p)  # b is unused by the softmax loss


def _rank(rank, world, port, kind, out):
    """One DDP rank: its half of the batch, the loss with gathered texts, backward; rank 0 saves the result."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    img, txt = unit(8, 6), unit(8, 6, seed=1)
    ids = torch.randint(0, 3, (8, 2), generator=torch.Generator().manual_seed(2))
    b = 8 // world
    img = img[rank * b : (rank + 1) * b].clone().requires_grad_()
    txt = txt[rank * b : (rank + 1) * b].clone().requires_grad_()
    t, bias = torch.tensor([1.5], requires_grad=True), torch.tensor([-3.0], requires_grad=True)
    loss = contrastive_loss(kind, img, txt, t, bias, text_ids=ids[rank * b : (rank + 1) * b])
    loss.backward()
    grads = torch.cat([img.grad.flatten(), txt.grad.flatten()])
    scalars = torch.cat([loss.detach().view(1), grad(t), grad(bias)])
    dist.all_reduce(scalars)  # DDP averages: sum here, divide below
    parts = [torch.empty_like(grads) for _ in range(world)]
    dist.all_gather(parts, grads)
    if rank == 0:
        torch.save({"scalars": scalars / world, "grads": torch.stack(parts) / world}, out)
    dist.barrier()
    os._exit(0)  # skip interpreter teardown: gloo's threads sometimes abort it ("terminate called ...")


@pytest.mark.parametrize("kind", ["sigmoid", "softmax"])
def test_two_ranks_equal_one_process_on_the_whole_batch(kind, tmp_path):
    """Gathered texts (with gradients) on 2 gloo ranks give the single-process loss and gradients."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(2, port, kind, str(tmp_path / "out.pt")), nprocs=2, join=True)
    got = torch.load(tmp_path / "out.pt")

    img, txt = unit(8, 6).requires_grad_(), unit(8, 6, seed=1).requires_grad_()
    ids = torch.randint(0, 3, (8, 2), generator=torch.Generator().manual_seed(2))
    t, bias = torch.tensor([1.5], requires_grad=True), torch.tensor([-3.0], requires_grad=True)
    loss = contrastive_loss(kind, img, txt, t, bias, text_ids=ids)
    loss.backward()
    expected = torch.cat([loss.detach().view(1), grad(t), grad(bias)])
    torch.testing.assert_close(got["scalars"], expected, atol=1e-5, rtol=1e-4)
    per_rank = got["grads"].view(2, 2, 4, 6)  # (rank, img/txt, local batch, E)
    full = torch.stack([img.grad.view(2, 4, 6), txt.grad.view(2, 4, 6)], 1)  # (rank, img/txt, 4, E)
    torch.testing.assert_close(per_rank, full, atol=1e-5, rtol=1e-4)
