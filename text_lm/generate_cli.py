"""`text-lm generate`: stream text from a checkpoint, with the KV cache."""

from __future__ import annotations

import argparse
import codecs
import sys

from shared.errors import ArgumentParser, UserError, exit_on_user_error
from shared.train.sampling_args import add_sampling_args, check_sampling_args


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="text-lm generate", description="Generate text from a trained checkpoint.")
    p.add_argument(
        "--checkpoint", required=True, help="a .ckpt written by `text-lm fit` (config and tokenizer inside)"
    )
    p.add_argument(
        "--prompt", default="", help="text to continue (default: start after an end-of-text token)"
    )
    p.add_argument("--max-new-tokens", type=int, default=200, help="tokens to generate at most (default 200)")
    add_sampling_args(p, temperature=0.8)
    return p


def check(args) -> None:
    if args.max_new_tokens < 0:
        raise UserError(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    check_sampling_args(args)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    check(args)
    import torch

    from text_lm.checkpoint import model_from_checkpoint
    from text_lm.generate import generate_from_args

    model, tok = model_from_checkpoint(args.checkpoint)
    if tok is None:
        raise UserError(f"{args.checkpoint}: no tokenizer stored in the checkpoint")
    model.to(args.device)
    ids = tok.encode(args.prompt) if args.prompt else [tok.eos_id]
    limit = model.config.max_seq_len
    if model.config.position == "learned" and len(ids) + args.max_new_tokens > limit:
        raise UserError(
            f"prompt ({len(ids)} tokens) + --max-new-tokens {args.max_new_tokens} exceeds the model's context "
            f"of {limit} tokens"
        )
    if len(ids) > limit:
        raise UserError(f"the prompt is {len(ids)} tokens, longer than the model's context of {limit}")
    g = None
    if args.seed is not None:
        torch.manual_seed(args.seed)
        g = torch.Generator(device=args.device).manual_seed(args.seed)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out = sys.stdout
    out.write(args.prompt)
    stream = generate_from_args(model, ids, args, tok, tok.eos_id, g)
    for t in stream:
        t = int(t)
        if t == tok.eos_id:
            break
        out.write(decoder.decode(tok.token_bytes(t)))
        out.flush()
    out.write(decoder.decode(b"", final=True) + "\n")


if __name__ == "__main__":
    main()
