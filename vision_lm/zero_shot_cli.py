"""`vision-lm zero-shot`: classify one image among labels given on the command line.

Each label is put into the prompt templates (by default those of the training data, stored
in the checkpoint: "a small {}" and "a large {}" for the shapes set), and a label's logit
is that of its best-matching template (`vision_lm/evaluation.py` says why not the mean).

Printed probability: the softmax over the given labels of the logits exp(t) * cos + b,
i.e. "which of these labels is it", summing to one. SigLIP itself scores every pair
independently (sigmoid(logit) = "is this the caption?"); `--independent` prints those,
which need not sum to one and are all low for an image that matches no label.
"""

from __future__ import annotations

import argparse

from shared.errors import ArgumentParser, UserError, exit_on_user_error


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="vision-lm zero-shot",
        description="Classify an image among labels with a trained SigLIP checkpoint; prints one "
        "'label<TAB>probability' line per label, best first.",
    )
    p.add_argument(
        "--checkpoint", required=True, help="a .ckpt written by `vision-lm fit` (config and tokenizer inside)"
    )
    p.add_argument("--image", required=True, help="image file (any Pillow format; RGB, grey or RGBA)")
    p.add_argument(
        "--labels", required=True, help='comma-separated class names, e.g. "red circle,blue square"'
    )
    p.add_argument(
        "--template",
        action="append",
        metavar="TEXT",
        help="prompt template with {} for the label; repeat to average several "
        "(default: the training data's, stored in the checkpoint)",
    )
    p.add_argument(
        "--independent",
        action="store_true",
        help="print SigLIP's independent sigmoid(logit) per label instead of the softmax over labels",
    )
    return p


def parse_labels(text: str) -> list[str]:
    labels = list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    if not labels:
        raise UserError("--labels is empty: give comma-separated class names")
    return labels


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    labels = parse_labels(args.labels)
    for t in args.template or []:
        if "{}" not in t:
            raise UserError(f"--template {t!r} has no {{}} for the label")
    import torch

    from vision_lm.checkpoint import siglip_from_checkpoint
    from vision_lm.evaluation import class_scores, embed_classes
    from vision_lm.records import load_image_file
    from vision_lm.text_batch import TextEncoder

    loaded = siglip_from_checkpoint(args.checkpoint)
    if loaded.tokenizer is None:
        raise UserError(f"{args.checkpoint}: no tokenizer stored in the checkpoint")
    model, c = loaded.model, loaded.model.config
    pixels = load_image_file(args.image, c.vision.image_size)
    with torch.no_grad():
        encoder = TextEncoder(loaded.tokenizer, c.text.max_len)
        text = embed_classes(model, encoder, labels, args.template or loaded.templates)  # (n_labels, n_t, E)
        cos = class_scores(model.encode_image(pixels), text)[0]  # (n_labels,)
        logits = model.logit_scale.exp() * cos + model.logit_bias
    probs = logits.sigmoid() if args.independent else logits.softmax(-1)
    for k in probs.argsort(descending=True).tolist():
        print(f"{labels[k]}\t{probs[k].item():.4f}")


if __name__ == "__main__":
    main()
