"""`text-lm export-hf`: a checkpoint -> a folder `transformers` loads (Llama or Mixtral)."""

from __future__ import annotations

from pathlib import Path

from shared.errors import ArgumentParser, UserError, exit_on_user_error


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(
        prog="text-lm export-hf",
        description="Write model.safetensors + config.json (+ tokenizer) loadable by "
        "transformers.AutoModelForCausalLM.from_pretrained(DIR).",
    )
    p.add_argument("--checkpoint", required=True, help="a .ckpt written by `text-lm fit`")
    p.add_argument("--out", required=True, help="output folder (created; files replaced atomically)")
    args = p.parse_args(argv)

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a file, not a folder")

    from shared.io import write_json_atomic
    from shared.nn.lora import merge_lora
    from shared.tokenizer.hf_format import write_hf_tokenizer
    from text_lm.checkpoint import model_from_checkpoint
    from text_lm.hf_convert import save_hf

    model, tok = model_from_checkpoint(args.checkpoint)
    merge_lora(model)  # a LoRA checkpoint exports merged: W + (alpha / r) B A, the base's shapes
    out = save_hf(model, args.out)
    if tok is not None:
        tok.save(out / "bpe_tokenizer.json")  # our format; tiktoken-compatible ranks
        write_hf_tokenizer(tok, out, model_max_length=model.config.max_seq_len)  # AutoTokenizer, pipeline()
        write_json_atomic(
            out / "generation_config.json",
            {"eos_token_id": tok.eos_id, "bos_token_id": tok.bos_id, "pad_token_id": tok.pad_id},
        )
    print(f"exported {model.config.name} ({model.num_params() / 1e6:.1f}M parameters) to {out}")


if __name__ == "__main__":
    main()
