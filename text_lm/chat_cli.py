"""`text-lm chat --checkpoint PATH`: talk to a model, one message per line, replies streamed.

Each line read from stdin is a user message. The conversation so far goes through the chat
template of the checkpoint's tokenizer (`shared/tokenizer/chat.py`) with the assistant header
appended, and the reply is sampled token by token with the KV cache until `<|eos|>` (the end of
a turn; a role token, which would open a new one, also stops it) or `--max-new-tokens`, printed as it comes.

History stays within the context window: before each reply, the oldest exchanges are dropped
until the prompt plus `--max-new-tokens` fit `max_seq_len` (the `--system` message is kept). A
message that cannot fit even alone is refused with one line on stderr; the session goes on, and
the exit status is then 2. `/reset` forgets the history; end of input (Ctrl-D) ends the session.
A LoRA checkpoint is merged first (one plain model, no adapter cost per token).
"""

from __future__ import annotations

import argparse
import codecs
import sys

from shared.errors import ArgumentParser, UserError, exit_on_user_error
from shared.train.sampling_args import add_sampling_args, check_sampling_args


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="text-lm chat", description="Chat with a checkpoint: one message per line on stdin."
    )
    p.add_argument(
        "--checkpoint", required=True, help="a .ckpt written by `text-lm fit` or `text-lm finetune fit`"
    )
    p.add_argument("--system", default="", help="a system message put before the conversation (kept in it)")
    p.add_argument("--max-new-tokens", type=int, default=128, help="tokens per reply at most (default 128)")
    add_sampling_args(p, temperature=0.8)
    return p


def fit_history(tok, system: list[dict], history: list[dict], room: int) -> tuple[list[int], list[dict]]:
    """(prompt ids, the history kept): the oldest exchanges dropped until the prompt is <= room tokens.
    The last message (the new one) is never dropped; UserError if it cannot fit."""
    from shared.tokenizer.chat import encode_chat

    while True:
        ids, _ = encode_chat(tok, system + history, add_generation_prompt=True)
        if len(ids) <= room:
            return ids, history
        if len(history) <= 1:
            raise UserError(
                f"the message is too long: the prompt is {len(ids)} tokens and only {room} fit the context "
                "(max_seq_len - --max-new-tokens)"
            )
        history = history[2:] if len(history) > 2 else history[-1:]


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    check_sampling_args(args)
    import torch

    from shared.nn.lora import merge_lora
    from shared.tokenizer.chat import END, stop_ids
    from text_lm.checkpoint import model_from_checkpoint
    from text_lm.generate import generate_from_args

    model, tok = model_from_checkpoint(args.checkpoint)
    if tok is None:
        raise UserError(f"{args.checkpoint}: no tokenizer stored in the checkpoint")
    end, stops = tok.token_id(END), stop_ids(tok)  # stop_ids: UserError if tok has no chat layout
    merge_lora(model)
    model.to(args.device)
    room = model.config.max_seq_len - args.max_new_tokens
    if room < 8:
        raise UserError(
            f"--max-new-tokens {args.max_new_tokens} leaves no room for a prompt in the context of "
            f"{model.config.max_seq_len} tokens"
        )
    g = torch.Generator(device=args.device).manual_seed(args.seed) if args.seed is not None else None
    system = [{"role": "system", "content": args.system}] if args.system else []
    history: list[dict] = []
    refused = False
    if hasattr(sys.stdin, "reconfigure"):  # undecodable bytes become U+FFFD, not a traceback
        sys.stdin.reconfigure(errors="replace")
    interactive = sys.stdin.isatty()
    out = sys.stdout
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        message = line.rstrip("\n")
        if not message.strip():
            continue
        if message.strip() == "/reset":
            history = []
            continue
        try:
            ids, history = fit_history(tok, system, [*history, {"role": "user", "content": message}], room)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            refused = True
            continue
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        reply: list[int] = []
        stream = generate_from_args(model, ids, args, tok, end, g)
        for t in stream:
            t = int(t)
            if t in stops:
                break
            reply.append(t)
            out.write(decoder.decode(tok.token_bytes(t)))
            out.flush()
        out.write(decoder.decode(b"", final=True) + "\n")
        out.flush()
        history.append({"role": "assistant", "content": tok.decode(reply)})
    if refused:
        sys.exit(2)


if __name__ == "__main__":
    main()
