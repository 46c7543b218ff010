"""`vision-lm caption`: caption an image, or answer a question about it, with a trained captioner.

Prints the generated text alone, one line per image. The prompt is that of training:
"caption en" (the default) for a caption, "answer en <question>" for a question
(`--question Q` is a shorthand). Several images are decoded together as one batch; give
one `--prompt` for all of them or one per image.

`--rerank SIGLIP_CKPT` lets a trained SigLIP choose among candidate captions
(`vision_lm/caption_rerank.py`): by default the greedy caption's single-token substitutions from the
captioner's own top choices, searched a token at a time (`--candidates substitutions`); or
`--candidates samples`: the greedy caption and `--n-best` - 1 samples.

`--contrast ALPHA` decodes with the decoder's language prior taken out (contrastive decoding,
`caption_generate.contrastive_logits`): what the image adds to the text, so a colour-shape pair never
seen in training can be named; it applies to every caption or answer generated, and with `--rerank` to
the captioner's vote on each substituted token as well.
"""

from __future__ import annotations

import argparse

from shared.errors import UserError, exit_on_user_error
from shared.train.sampling_args import add_sampling_args, check_sampling_args


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vision-lm caption",
        description="Generate a caption (or an answer) for images with a captioner checkpoint; prints the "
        "generated text alone, one line per image.",
    )
    p.add_argument(
        "--checkpoint", required=True, help="a .ckpt written by `vision-lm fit` with a captioner config"
    )
    p.add_argument(
        "--image", required=True, nargs="+", metavar="FILE", help="image file(s) (any Pillow format)"
    )
    p.add_argument(
        "--prompt",
        action="append",
        metavar="TEXT",
        help='"caption en" (default) or "answer en QUESTION"; once for all images or once per image',
    )
    p.add_argument("--question", metavar="Q", help='shorthand for --prompt "answer en Q"')
    p.add_argument("--max-new-tokens", type=int, default=32, help="tokens to generate at most (default 32)")
    p.add_argument(
        "--rerank",
        metavar="SIGLIP_CKPT",
        help="a SigLIP checkpoint: print, of the --candidates captions, the one it scores highest",
    )
    p.add_argument(
        "--candidates",
        choices=("substitutions", "samples"),
        default=None,
        help="for --rerank: 'substitutions' (default): the greedy caption, changed a token at a time "
        "among the captioner's top choices for that slot; 'samples': the greedy caption and samples",
    )
    p.add_argument(
        "--n-best",
        type=int,
        default=None,
        help="candidates per image for --candidates samples: the greedy caption plus samples at "
        "--temperature (1.0 when it is 0); default 8",
    )
    p.add_argument(
        "--contrast",
        type=float,
        default=0.0,
        metavar="ALPHA",
        help="contrastive decoding: score tokens by (1 + ALPHA) log p(token | image, text) - ALPHA log "
        "p(token | text) (default 0: off; 0.5 names unseen colour-shape pairs more often, BENCHMARKS.md)",
    )
    p.add_argument(
        "--plausibility",
        type=float,
        default=0.1,
        metavar="BETA",
        help="for --contrast: only tokens at least BETA times as likely as the best one are chosen (default 0.1)",
    )
    add_sampling_args(p, temperature=0.0)
    return p


def prompts_for(args) -> list[str]:
    """One prompt per image, checked."""
    if args.question is not None and args.prompt:
        raise UserError("give --prompt or --question, not both")
    prompts = [f"answer en {args.question}"] if args.question is not None else (args.prompt or ["caption en"])
    prompts = [" ".join(p.split()) for p in prompts]
    if not all(prompts):
        raise UserError("the prompt is empty (use 'caption en' or 'answer en QUESTION')")
    if len(prompts) == 1:
        return prompts * len(args.image)
    if len(prompts) != len(args.image):
        raise UserError(f"{len(prompts)} prompts for {len(args.image)} images: give one, or one per image")
    return prompts


def check_contrast(contrast: float, plausibility: float = 0.1) -> None:
    """--contrast and --plausibility (here and in `demo_vision_report`)."""
    if contrast < 0:
        raise UserError(f"--contrast must be >= 0, got {contrast}")
    if not 0 < plausibility <= 1:
        raise UserError(f"--plausibility must be in (0, 1], got {plausibility}")


def check(args) -> None:
    if args.max_new_tokens <= 0:
        raise UserError(f"--max-new-tokens must be positive, got {args.max_new_tokens}")
    check_sampling_args(args)
    check_contrast(args.contrast, args.plausibility)
    if (args.n_best is not None or args.candidates) and not args.rerank:
        flag = "--n-best" if args.n_best is not None else "--candidates"
        raise UserError(f"{flag} needs --rerank SIGLIP_CKPT to choose among the candidates")
    if args.rerank:
        args.candidates = args.candidates or ("samples" if args.n_best is not None else "substitutions")
        if args.candidates == "substitutions":
            given = {"--n-best": args.n_best, "--temperature": args.temperature or None, "--top-k": args.top_k,
                     "--top-p": args.top_p, "--seed": args.seed}  # fmt: skip
            for flag, value in given.items():
                if value is not None:
                    raise UserError(f"{flag} is for sampling: it goes with --candidates samples")
        args.n_best = 8 if args.n_best is None else args.n_best
        if args.n_best < 1:
            raise UserError(f"--n-best must be >= 1, got {args.n_best}")


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    check(args)
    prompts = prompts_for(args)
    if args.rerank and any(not p.startswith("caption") for p in prompts):
        raise UserError("--rerank scores captions; it does not apply to 'answer en' prompts")
    import torch

    from vision_lm.caption_generate import caption_images
    from vision_lm.checkpoint import captioner_from_checkpoint
    from vision_lm.records import load_image_file

    loaded = captioner_from_checkpoint(args.checkpoint)
    if loaded.tokenizer is None:
        raise UserError(f"{args.checkpoint}: no tokenizer stored in the checkpoint")
    try:
        device = torch.device(args.device)
        model = loaded.model.to(device)
    except (RuntimeError, AssertionError) as e:
        raise UserError(f"--device {args.device}: not usable here ({str(e).splitlines()[0]})") from None
    size = model.config.vision.image_size
    pixels = torch.cat([load_image_file(f, size) for f in args.image]).to(device)
    generator = None
    if args.seed is not None:
        generator = torch.Generator(device=device).manual_seed(args.seed)
    sampling = dict(
        top_k=args.top_k, top_p=args.top_p, generator=generator, contrast=args.contrast,
        plausibility=args.plausibility,
    )  # fmt: skip
    if args.rerank:
        texts = reranked(args, loaded, pixels, prompts, sampling, device)
    else:
        texts = caption_images(
            model,
            loaded.tokenizer,
            pixels,
            prompts,
            args.max_new_tokens,
            temperature=args.temperature,
            **sampling,
        )
    for text in loaded.readable(texts, prompts):
        print(text, flush=True)


def reranked(args, loaded, pixels, prompts, sampling, device) -> list[str]:
    """The best of the --candidates captions of each image by the --rerank SigLIP's logit."""
    import torch

    from vision_lm.caption_generate import caption_images
    from vision_lm.caption_rerank import n_best, siglip_rerank, substitution_search
    from vision_lm.checkpoint import siglip_from_checkpoint
    from vision_lm.records import load_image_file

    siglip = siglip_from_checkpoint(args.rerank)
    if siglip.tokenizer is None:
        raise UserError(f"{args.rerank}: no tokenizer stored in the checkpoint")
    size = siglip.model.config.vision.image_size
    siglip_pixels = torch.cat([load_image_file(f, size) for f in args.image]).to(device)
    if args.candidates == "substitutions":
        greedy = caption_images(
            loaded.model, loaded.tokenizer, pixels, prompts, args.max_new_tokens, contrast=args.contrast,
            plausibility=args.plausibility,
        )  # fmt: skip
        return substitution_search(
            loaded.model, loaded.tokenizer, siglip.model.to(device), siglip.tokenizer, pixels, siglip_pixels, greedy,
            contrast=args.contrast, as_read=loaded.readable,
        )  # fmt: skip
    temperature = args.temperature or 1.0
    candidates = n_best(
        loaded.model,
        loaded.tokenizer,
        pixels,
        prompts,
        args.n_best,
        temperature,
        max_new_tokens=args.max_new_tokens,
        **sampling,
    )
    return siglip_rerank(
        siglip.model.to(device), siglip.tokenizer, siglip_pixels, candidates, loaded.readable
    )


if __name__ == "__main__":
    main()
