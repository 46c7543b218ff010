"""`vision-lm export-hf`: a SigLIP checkpoint -> a folder `transformers.SiglipModel` loads."""

from __future__ import annotations

import argparse

from shared.errors import exit_on_user_error


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="vision-lm export-hf",
        description="Write model.safetensors + config.json (+ our bpe_tokenizer.json) loadable by "
        "transformers.SiglipModel.from_pretrained(DIR), giving the same embeddings and logits.",
    )
    p.add_argument("--checkpoint", required=True, help="a .ckpt written by `vision-lm fit`")
    p.add_argument("--out", required=True, help="output folder (created; files replaced atomically)")
    args = p.parse_args(argv)

    from vision_lm.checkpoint import siglip_from_checkpoint
    from vision_lm.hf_siglip import save_hf

    loaded = siglip_from_checkpoint(args.checkpoint)
    tok = loaded.tokenizer
    ids = None
    if tok is not None:
        ids = {"pad_token_id": tok.pad_id, "bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id}
    out = save_hf(loaded.model, args.out, token_ids=ids)
    if tok is not None:
        tok.save(out / "bpe_tokenizer.json")  # our format (DESIGN.md section 3); tiktoken-compatible ranks
    n = loaded.model.num_params() / 1e6
    print(f"exported {loaded.model.config.name} ({n:.1f}M parameters) to {out}")


if __name__ == "__main__":
    main()
