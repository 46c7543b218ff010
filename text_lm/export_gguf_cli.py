"""`text-lm export-gguf`: a checkpoint -> one GGUF file llama.cpp runs (`llama-cli -m FILE.gguf`)."""

from __future__ import annotations

from pathlib import Path

from shared.errors import ArgumentParser, UserError, exit_on_user_error


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    from text_lm.gguf_export import DTYPES

    p = ArgumentParser(
        prog="text-lm export-gguf",
        description="Write a GGUF file (weights, llama architecture metadata and the tokenizer) for "
        "llama.cpp, Ollama and other GGML runtimes.",
    )
    p.add_argument("--checkpoint", required=True, help="a .ckpt written by `text-lm fit`")
    p.add_argument("--out", required=True, help="the .gguf file to write (replaced atomically)")
    p.add_argument(
        "--dtype",
        default="f32",
        choices=DTYPES,
        help="matrix precision: f32 (exact), f16, or q8_0 (8-bit blocks of 32); norms stay f32",
    )
    args = p.parse_args(argv)
    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name such as {out / 'model.gguf'}")

    from shared.nn.lora import merge_lora
    from text_lm.checkpoint import model_from_checkpoint
    from text_lm.gguf_export import write_gguf

    model, tok = model_from_checkpoint(args.checkpoint)
    merge_lora(model)  # a LoRA checkpoint exports merged: W + (alpha / r) B A, the base's shapes
    write_gguf(model, tok, out, args.dtype)
    size = out.stat().st_size / 2**20
    print(
        f"exported {model.config.name} ({model.num_params() / 1e6:.1f}M parameters, {args.dtype}) to {out} ({size:.1f} MiB)"
    )


if __name__ == "__main__":
    main()
