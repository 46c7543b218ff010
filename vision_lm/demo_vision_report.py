"""Summarise `make demo-vision`: SigLIP's zero-shot accuracy, the captioner's caption exact-match, BLEU,
VQA accuracy (on shapes also apart for each kind of question) and held-out pair recall (exact-match also
apart on one-object and several-object images, where binding attributes to objects shows), the diagnosis
probes, and generated captions of held-out test images beside the true ones.

python -m vision_lm.demo_vision_report --data data/shapes --siglip runs/demo-vision/siglip-tiny \
    --captioner runs/demo-vision/paligemma-tiny

Run folders (their newest version_N/checkpoints/last.ckpt) or .ckpt files are accepted. Columns, all
images never trained on: "seen" = validation scenes of colour-shape pairs seen in training; "val pair"
= validation scenes with the validation held-out pair (for model selection; shapes sets of version 2);
"test" = scenes with the test's held-out pairs (compositional generalisation).

Diagnosis (issue 13): colour and shape linear probes on frozen image embeddings (`evaluation.
attribute_probes`), fit on seen pairs and scored on seen and held-out pairs: a shape probe that fails
on held-out pairs says the image tower entangles colour and shape; one that succeeds while zero-shot
or captions fail puts the fault on the text side. Fit on seen pairs, a shape probe also learns the colour
prior (green is never a triangle there), so a second shape probe is fit on stream scenes in the training-only
colours, which come with every shape ("colour-free shape probe"). Held-out pair recall: does the caption name the
held-out pair at all, whatever else it gets wrong.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from shared.errors import UserError, exit_on_user_error

PARTS = ("seen", "val pair", "test")


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


def load_part(data_dir: str, part: str, size: int, limit: int | None = None):
    """(records, (N, 3, size, size) normalised pixels, dataset_info) of one column of the report (PARTS,
    or "train"); None when the data has no such images."""
    import torch

    from vision_lm.records import image_tensor, normalize, open_image, open_splits

    splits, info = open_splits(data_dir, "captioning", "image", "text")
    split = {"seen": "val", "val pair": "val"}.get(part, part)
    if split not in splits:
        return None
    recs = splits[split].records
    if part in ("seen", "val pair"):
        recs = [r for r in recs if r.held_out == (part == "val pair")]
    recs = recs[:limit]
    if not recs:
        return None
    return recs, normalize(torch.stack([image_tensor(open_image(r), size) for r in recs])), info


def zero_shot(loaded, data_dir: str) -> dict[str, float]:
    """Zero-shot accuracy per column, on the one-object images, among all classes (held-out ones too)."""
    import torch

    from vision_lm.evaluation import embed_classes, zero_shot_accuracy
    from vision_lm.text_batch import TextEncoder

    model, c = loaded.model, loaded.model.config
    out = {}
    for part in PARTS:
        got = load_part(data_dir, part, c.vision.image_size)
        if got is None:
            continue
        recs, pixels, info = got
        classes = info.get("classes") or sorted({r.label for r in recs if r.label})
        rows = [i for i, r in enumerate(recs) if r.single and r.label in classes]
        if not rows:
            continue
        encoder = TextEncoder(loaded.tokenizer, c.text.max_len)
        text = embed_classes(model, encoder, classes, loaded.templates)
        labels = torch.tensor([classes.index(recs[i].label) for i in rows])
        out[part] = zero_shot_accuracy(model.encode_image(pixels[rows]), labels, text)
    return out


def probes(embed, data_dir: str, size: int) -> dict[str, dict[str, float]] | None:
    """Colour and shape linear probes (`evaluation.attribute_probes`) on `embed(pixels) -> (N, E)`: fit on
    the train folder's one-object images (seen pairs; at most 2000), scored on each column's one-object
    images. None when the data has no train folder or no labelled one-object images."""
    from vision_lm.evaluation import attribute_probes

    def singles(part, limit=None):
        got = load_part(data_dir, part, size)
        if got is None:
            return None
        keep = [i for i, r in enumerate(got[0]) if r.single and r.label][:limit]
        return ([got[0][i].label for i in keep], got[1][keep]) if keep else None

    fit = singles("train", 2000)
    sets = {p: s for p in PARTS if (s := singles(p)) is not None}
    if fit is None or not sets:
        return None
    feats = {p: (embed(px), lb) for p, (lb, px) in sets.items()}
    out = attribute_probes(embed(fit[1]), fit[0], feats)
    free = colour_free_singles(data_dir, size)
    if free is not None:  # the shape probe again, fit where colour says nothing about shape
        out["colour-free shape"] = attribute_probes(embed(free[1]), free[0], feats)["shape"]
    return out


def colour_free_singles(data_dir: str, size: int, n: int = 1000):
    """(labels, normalised pixels) of n one-shape stream scenes drawn in the training-only colours, which come
    with every shape; None for a folder that is not a shapes set.

    Fit on seen pairs, a shape probe learns the colour prior as well (green is never a triangle there) and
    answers a seen shape on a held-out pair however well the tower sees shape; fit here, it cannot."""
    import torch

    from vision_lm.records import normalize
    from vision_lm.shapes import read_info
    from vision_lm.shapes_stream import ShapesStream
    from vision_lm.shapes_style import EXTRA_COLORS, Diversity

    info = read_info(data_dir)
    if not info or info.get("name") != "shapes":
        return None
    stream = ShapesStream(info["seed"], size, 10**9, Diversity(extra_colors=True))
    found = stream.one_shape_scenes(n, keep=lambda shape: shape.color in EXTRA_COLORS)
    labels, pixels = [shape.label for _, shape in found], [stream[k][0] for k, _ in found]
    return labels, normalize(torch.stack(pixels))


def fmt(x: float | None) -> str:
    return "     -" if x is None or math.isnan(x) else f"{x:6.3f}"


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/shapes", help="the shapes folder (val and test splits are used)")
    p.add_argument("--siglip", help="SigLIP run folder or checkpoint (zero-shot accuracy)")
    p.add_argument("--captioner", help="captioner run folder or checkpoint")
    p.add_argument("--examples", type=int, default=8, help="generated test captions to show (default 8)")
    p.add_argument("--no-probes", action="store_true", help="skip the colour/shape linear probes")
    p.add_argument(
        "--rerank",
        choices=("substitutions", "samples"),
        help="also score captions chosen by --siglip among the greedy caption's token substitutions, or "
        "among --n-best samples (`vision-lm caption --rerank`)",
    )
    p.add_argument("--n-best", type=int, default=8, help="candidates for --rerank samples (default 8)")
    p.add_argument(
        "--contrast",
        type=float,
        default=0.0,
        metavar="ALPHA",
        help="decode captions and answers contrastively (`vision-lm caption --contrast`; default 0: off)",
    )
    args = p.parse_args(argv)
    from vision_lm.caption_cli import check_contrast

    check_contrast(args.contrast)
    if not args.siglip and not args.captioner:
        raise UserError("give --siglip, --captioner or both")
    if args.rerank and not (args.siglip and args.captioner):
        raise UserError("--rerank needs both --siglip and --captioner")
    import torch

    with torch.no_grad():  # not set_grad_enabled: a caller in the same process keeps its autograd
        report(args)


def report(args: argparse.Namespace) -> None:
    from vision_lm.checkpoint import captioner_from_checkpoint, siglip_from_checkpoint

    rows: list[tuple[str, dict]] = []
    probe_rows: list[tuple[str, dict | None]] = []
    siglip = cap = None
    if args.siglip:
        siglip = siglip_from_checkpoint(checkpoint_of(args.siglip))
        rows.append(("SigLIP zero-shot accuracy", zero_shot(siglip, args.data)))
        if not args.no_probes:
            size = siglip.model.config.vision.image_size
            probe_rows.append(("SigLIP", probes(siglip.model.encode_image, args.data, size)))
    examples: list[tuple[str, str, str, str]] = []
    if args.captioner:
        from vision_lm.caption_eval import caption_scores, captions_of, vqa_scores
        from vision_lm.shapes_questions import QUESTION_KINDS, question_kind

        ckpt = checkpoint_of(args.captioner)
        cap = captioner_from_checkpoint(ckpt)
        size = cap.model.config.vision.image_size
        scores: dict[str, dict] = {}
        for part in PARTS:
            got = load_part(args.data, part, size)
            if got is None:
                continue
            recs, pixels, info = got
            pairs = list(info.get("val_held_out" if part == "val pair" else "held_out", []))
            captions = reranked = captions_of(cap, recs, pixels, contrast=args.contrast)
            kind_of = question_kind if info.get("name") == "shapes" else None
            scores[part] = {
                **caption_scores(captions, recs, pairs),
                **vqa_scores(cap, recs, pixels, kind_of, contrast=args.contrast),
            }
            if args.rerank:
                siglip_px = load_part(args.data, part, siglip.model.config.vision.image_size)[1]
                n_best = args.n_best if args.rerank == "samples" else 0
                reranked = captions_of(
                    cap, recs, pixels, (siglip, siglip_px), n_best, greedy=captions, contrast=args.contrast
                )
                for k, v in caption_scores(reranked, recs, pairs).items():
                    scores[part][f"reranked {k}"] = v
            if part == "test":
                examples = [
                    (Path(str(r.image)).name, c, rr, r.text) for r, c, rr in zip(recs, captions, reranked)
                ]
        names = {"caption_exact": "caption exact-match", "caption_exact_one": "exact-match, one-object images",
                 "caption_exact_several": "exact-match, several objects", "bleu": "caption BLEU-4",
                 "vqa_acc": "VQA accuracy", **{f"vqa_acc {k}": f"VQA accuracy, {k} questions" for k in QUESTION_KINDS
                 if any(f"vqa_acc {k}" in s for s in scores.values())},
                 "held_out_pair_recall": "held-out pair recall"}  # fmt: skip
        keys = list(names) + [
            f"reranked {k}"
            for k in ("caption_exact", "caption_exact_one", "caption_exact_several", "held_out_pair_recall")
            if args.rerank
        ]
        for key in keys:
            how = f"{args.n_best} samples" if args.rerank == "samples" else "substitutions"
            label = names.get(key) or f"{names[key.split(' ', 1)[1]]}, SigLIP re-rank of {how}"
            rows.append((f"captioner {label}", {part: s.get(key) for part, s in scores.items()}))
        if not args.no_probes:
            probe_rows.append(
                ("captioner", probes(lambda px: cap.model.encode_image(px).mean(1), args.data, size))
            )
    print(
        f"\n{args.data}: seen = val scenes of pairs seen in training; val pair = val scenes with the validation"
    )
    print("held-out pair; test = scenes with the test's held-out pairs (never in training or validation)")
    if args.captioner and args.contrast:
        print(f"captions and answers decoded contrastively (--contrast {args.contrast:g}, plausibility 0.1)")
    width = max(len(name) for name, _ in rows + [("x" * 40, {})])
    print(f"  {'':{width}s} " + " ".join(f"{p:>8s}" for p in PARTS))
    for name, by_part in rows:
        print(f"  {name:{width}s} " + " ".join(f"  {fmt(by_part.get(p))}" for p in PARTS))
    if any(r is not None for _, r in probe_rows):
        print(
            "diagnosis: linear probes on frozen image embeddings of one-shape images, fit on train (seen pairs;\n"
            "colour-free fit: on stream scenes in the training-only colours, which come with every shape):"
        )
        for title, result in probe_rows:
            for attribute, by_part in (result or {}).items():
                name = f"{title} {attribute} probe"
                print(f"  {name:{width}s} " + " ".join(f"  {fmt(by_part.get(p))}" for p in PARTS))
    if examples and args.examples > 0:
        print(f"\ngenerated vs true captions of held-out test images ({ckpt}):")
        pad = " " * (len(examples[0][0]) + 5)
        for name, pred, chosen, truth in examples[: args.examples]:
            mark = "ok " if pred == truth else "   "
            print(f"  {mark}{name}  generated: {pred}")
            if args.rerank:
                print(f"{pad}  re-ranked: {chosen}{'  (ok)' if chosen == truth else ''}")
            print(f"{pad}  true:      {truth}")
        print(f"\ncaption your own image: .venv/bin/vision-lm caption --checkpoint {ckpt} --image FILE")


if __name__ == "__main__":
    main()
