"""`vision-lm export-hf`: a checkpoint -> a folder Hugging Face transformers loads.

SigLIP checkpoints become `transformers.SiglipModel`, captioner checkpoints
`transformers.PaliGemmaForConditionalGeneration`, each giving the same outputs as ours. A LoRA
captioner checkpoint is rebuilt from its base and exported merged, W + (alpha / r) B A: the base's
shapes, logits equal to the unmerged model's (shared/nn/lora.py).
"""

from __future__ import annotations

from shared.errors import ArgumentParser, UserError, exit_on_user_error


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(
        prog="vision-lm export-hf",
        description="Write model.safetensors + config.json (+ our bpe_tokenizer.json) loadable by "
        "transformers.SiglipModel (a SigLIP checkpoint) or PaliGemmaForConditionalGeneration (a captioner "
        "checkpoint) .from_pretrained(DIR), giving the same logits.",
    )
    p.add_argument("--checkpoint", required=True, help="a .ckpt written by `vision-lm fit`")
    p.add_argument("--out", required=True, help="output folder (created; files replaced atomically)")
    args = p.parse_args(argv)

    from shared.nn.lora import merge_lora
    from shared.train.checkpoint import read_checkpoint
    from vision_lm.checkpoint import captioner_from_checkpoint, model_type, siglip_from_checkpoint
    from vision_lm.hf_processor import write_paligemma_processor, write_siglip_processor

    ckpt = read_checkpoint(args.checkpoint)
    if model_type(ckpt) == "paligemma":
        from vision_lm.hf_paligemma import save_hf

        loaded = captioner_from_checkpoint(args.checkpoint, ckpt)
    else:
        from vision_lm.hf_siglip import save_hf

        loaded = siglip_from_checkpoint(args.checkpoint, ckpt)
    merge_lora(loaded.model)  # a LoRA checkpoint exports merged (a no-op without adapters)
    unsupported = loaded.model.config.hf_unsupported()
    if unsupported:  # refused before anything is written
        raise UserError(
            f"{args.checkpoint}: {', '.join(unsupported)} has no Hugging Face equivalent, so this model "
            "cannot be exported (train without it to export)"
        )
    tok = loaded.tokenizer
    ids = None
    if tok is not None:
        ids = {"pad_token_id": tok.pad_id, "bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id}
        if model_type(ckpt) == "paligemma" and "<image>" in tok.special_tokens:
            ids["image_token_index"] = tok.special_tokens["<image>"]  # the placeholder HF's processor writes
    out = save_hf(loaded.model, args.out, token_ids=ids)
    if tok is not None:
        tok.save(out / "bpe_tokenizer.json")  # our format (ARCHITECTURE.md section 3)
        c = loaded.model.config
        if model_type(ckpt) == "paligemma":  # AutoProcessor.from_pretrained(out)
            write_paligemma_processor(tok, out, c.vision.image_size, c.n_image_tokens, c.decoder.max_len)
        else:
            write_siglip_processor(tok, out, c.vision.image_size, c.text.max_len)
    n = sum(p.numel() for p in loaded.model.parameters()) / 1e6
    print(f"exported {loaded.model.config.name} ({n:.1f}M parameters) to {out}")
    if model_type(ckpt) == "paligemma" and loaded.caption_order != "as_written":  # transformers prints it so
        print(f'note: it writes captions {loaded.caption_order} ("a small circle red"), as it was trained')


if __name__ == "__main__":
    main()
