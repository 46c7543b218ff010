"""Summarise `make demo-vision` on the val and held-out test splits: SigLIP's zero-shot accuracy, the
captioner's caption exact-match, BLEU and VQA accuracy, and a few generated captions beside the true ones.

python -m vision_lm.demo_vision_report --data data/shapes --siglip runs/demo-vision/siglip-tiny \
    --captioner runs/demo-vision/paligemma-tiny

Run folders (their newest version_N/checkpoints/last.ckpt) or .ckpt files are accepted. Both
splits hold images never trained on; the val split draws the colour-shape pairs seen in
training, the test split holds out pairs (green triangle, red square, blue circle): captioning
those is compositional generalisation, which the tiny CPU models mostly lack.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from shared.errors import UserError, exit_on_user_error


def checkpoint_of(path: str) -> Path:
    """A .ckpt file, or the last.ckpt of the newest version_N in a run folder."""
    p = Path(path)
    if p.is_file():
        return p
    versions = sorted(
        p.glob("version_*"), key=lambda v: int(v.name.split("_")[1]) if v.name[8:].isdigit() else -1
    )
    for version in reversed(versions):
        if (version / "checkpoints" / "last.ckpt").is_file():
            return version / "checkpoints" / "last.ckpt"
    raise UserError(
        f"{p}: no checkpoint (a .ckpt file, or a run folder with version_N/checkpoints/last.ckpt)"
    )


def load_split(data_dir: str, split: str, size: int):
    """(records, (N, 3, size, size) normalised pixels) of one imagefolder split."""
    import torch

    from vision_lm.records import image_tensor, normalize, open_image, open_splits

    splits, info = open_splits(data_dir, "captioning", "image", "text")
    if split not in splits:
        raise UserError(f"{data_dir}: no {split} split")
    recs = splits[split].records
    return recs, normalize(torch.stack([image_tensor(open_image(r), size) for r in recs])), info


def zero_shot(ckpt: Path, data_dir: str, split: str) -> float:
    import torch

    from vision_lm.checkpoint import siglip_from_checkpoint
    from vision_lm.evaluation import embed_classes, zero_shot_accuracy
    from vision_lm.text_batch import TextEncoder

    loaded = siglip_from_checkpoint(ckpt)
    model, c = loaded.model, loaded.model.config
    recs, pixels, info = load_split(data_dir, split, c.vision.image_size)
    classes = info.get("classes") or sorted({r.label for r in recs if r.label})
    rows = [i for i, r in enumerate(recs) if r.single and r.label in classes]
    with torch.no_grad():
        text = embed_classes(model, TextEncoder(loaded.tokenizer, c.text.max_len), classes, loaded.templates)
        img = model.encode_image(pixels[rows])
    labels = torch.tensor([classes.index(recs[i].label) for i in rows])
    return zero_shot_accuracy(img, labels, text)


def captioner_scores(ckpt: Path, data_dir: str, split: str, batch_size: int = 100) -> tuple[dict, list]:
    """{"caption_exact", "bleu", "vqa_acc"} on one split and its (file, generated, true) captions."""
    from torchmetrics.functional.text import bleu_score

    from vision_lm.caption_generate import caption_images
    from vision_lm.checkpoint import captioner_from_checkpoint
    from vision_lm.text_batch import CAPTION_PREFIX, VQA_PREFIX

    loaded = captioner_from_checkpoint(ckpt)
    recs, pixels, _ = load_split(data_dir, split, loaded.model.config.vision.image_size)
    captions, answers = [], []
    for start in range(0, len(recs), batch_size):
        part, px = recs[start : start + batch_size], pixels[start : start + batch_size]
        captions += caption_images(loaded.model, loaded.tokenizer, px, [CAPTION_PREFIX] * len(part))
        qa = [i for i, r in enumerate(part) if r.question and r.answer]
        prompts = [VQA_PREFIX.format(question=part[i].question) for i in qa]
        answers += list(
            zip(caption_images(loaded.model, loaded.tokenizer, px[qa], prompts), [part[i] for i in qa])
        )
    truths = [r.text for r in recs]
    scores = {
        "caption_exact": sum(p == t for p, t in zip(captions, truths)) / len(recs),
        "bleu": float(bleu_score(captions, [[t] for t in truths], n_gram=4)),
        "vqa_acc": sum(p == r.answer for p, r in answers) / max(1, len(answers)),
    }
    return scores, [(Path(str(r.image)).name, p, t) for r, p, t in zip(recs, captions, truths)]


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--data", default="data/shapes", help="the shapes folder (its val and test splits are used)"
    )
    p.add_argument("--siglip", help="SigLIP run folder or checkpoint (zero-shot accuracy)")
    p.add_argument("--captioner", required=True, help="captioner run folder or checkpoint")
    p.add_argument("--examples", type=int, default=6, help="generated captions to show (default 6)")
    args = p.parse_args(argv)
    import torch

    torch.set_grad_enabled(False)
    splits = ("val", "test")
    rows: list[tuple[str, list[float]]] = []
    if args.siglip:
        siglip = checkpoint_of(args.siglip)
        rows.append(("SigLIP zero-shot accuracy", [zero_shot(siglip, args.data, s) for s in splits]))
    ckpt = checkpoint_of(args.captioner)
    (val, _), (test, examples) = (captioner_scores(ckpt, args.data, s) for s in splits)
    rows += [
        ("captioner caption exact-match", [val["caption_exact"], test["caption_exact"]]),
        ("captioner caption BLEU-4", [val["bleu"], test["bleu"]]),
        ("captioner VQA accuracy", [val["vqa_acc"], test["vqa_acc"]]),
    ]
    print(f"\n{args.data}: val = new scenes of the colour-shape pairs seen in training;")
    print(
        "test = scenes with colour-shape pairs never seen in training (green triangle, red square, blue circle)"
    )
    print(f"  {'':32s} {'val':>6s} {'test':>6s}")
    for name, (v, t) in rows:
        print(f"  {name:32s} {v:6.3f} {t:6.3f}")
    print(f"\ngenerated vs true captions, test split ({ckpt}):")
    for name, pred, truth in examples[: args.examples]:
        mark = "ok " if pred == truth else "   "
        print(f"  {mark}{name}  generated: {pred}\n     {' ' * len(name)}  true:      {truth}")
    print(f"\ncaption your own image: .venv/bin/vision-lm caption --checkpoint {ckpt} --image FILE")


if __name__ == "__main__":
    main()
