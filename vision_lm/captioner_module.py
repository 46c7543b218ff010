"""`CaptionerModule`: the training system around `PaliGemma` (loss, generation metrics, logging, optimizer).

Training: teacher-forced next-token cross-entropy on the suffix only (`suffix_loss`), over
batches of the `ImageTextDataModule` in mode "captioning", "vqa" or "multitask" (both).

Logged (ARCHITECTURE.md section 5): train/loss, train/grad_norm, val/loss, and, from texts
generated greedily for every validation example (KV-cached, `caption_generate.py`):
- val/caption_exact: share of captions generated exactly (string equality);
- val/bleu: corpus BLEU-4 of the generated captions against the true ones (torchmetrics);
- val/vqa_acc: share of answers generated exactly (after their caption, see `text_batch`, the answer alone);
- samples/captions: a TensorBoard image of a few examples with generated and true texts.
`test` does the same on the test split (for the shapes set: scenes with held-out
colour-shape pairs) as test/*.

The image tower may start from a trained SigLIP (`vision_init_from`) and learn more slowly
than the rest (`vision_lr_multiplier`), as PaliGemma's first stage does. Fine-tuning starts from a
whole captioner (`init_from`, its tokenizer too); `lora` then trains low-rank adapters on it alone
(the seam of the system base, `shared/train/finetune.py`, as the text system's `model.lora`).

On the shared system base (`shared/train/system.py`): starting weights, frozen parts and learning
rate factors are its hooks (`load_initial_weights`, `frozen_modules`, `param_group_options`).
"""

from __future__ import annotations

from typing import Literal

import torch
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.text import BLEUScore

from shared.errors import UserError
from shared.train.data_contract import CaptionData
from shared.train.finetune import LoRAConfig, set_lora
from shared.train.system import System
from vision_lm import caption_order, text_batch
from vision_lm.caption_generate import generate, special_ids
from vision_lm.caption_grid import caption_grid
from vision_lm.paligemma import PaliGemma, suffix_loss
from vision_lm.paligemma_config import PaliGemmaConfig
from vision_lm.text_batch import AFTER_CAPTION_KEY, TASKS, answer_of, drop_suffix_words
from vision_lm.text_lengths import check_decoder_lengths

CAPTION, VQA = TASKS.index("caption"), TASKS.index("vqa")


class CaptionerModule(System):
    model_type = "paligemma"
    data_contract = CaptionData

    def __init__(
        self,
        config: PaliGemmaConfig | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.1,
        vision_lr_multiplier: float = 1.0,
        vision_init_from: str | None = None,
        init_from: str | None = None,
        lora: LoRAConfig | None = None,
        compile: bool = False,
        gradient_checkpointing: bool = False,
        schedule: Literal["cosine", "wsd"] = "cosine",
        decay_fraction: float = 0.2,
        max_new_tokens: int = 24,
        sample_images: int = 8,
        word_dropout: float = 0.0,
        answer_weight: float = 1.0,
    ):
        """
        Args:
            config: the model (defaults: the CPU model of configs/vision/paligemma-shapes.yaml).
            optimizer: optimizer class and arguments (lr, betas, weight_decay); it receives our
                parameter groups (no weight decay on norms, biases and the embedding table).
            warmup_steps: linear warmup steps before the cosine decay.
            min_lr_ratio: final learning rate as a fraction of the peak.
            vision_lr_multiplier: learning-rate factor of the image tower (e.g. 0.1 to keep most of
                a pretrained SigLIP tower; 0 freezes it).
            vision_init_from: a SigLIP (or captioner) checkpoint whose image tower initialises ours
                when fitting; its vision config must equal model.config.vision (pooling aside).
            init_from: fine-tune: a captioner checkpoint (.ckpt, a LoRA one merged) or export-hf
                folder whose weights (and tokenizer) start the model; its config must equal
                model.config (name aside). Weights only: a fresh optimizer and schedule.
            lora: train low-rank adapters on the `init_from` base instead of every weight
                (shared/train/finetune.py): only the adapters train and are saved. Targets by layer
                name, or globs such as "decoder.*.qkv_proj" for the decoder alone.
            compile: torch.compile the model (not the LightningModule).
            gradient_checkpointing: recompute each block's activations (image tower and decoder) in
                the backward pass instead of keeping them: less memory, about one more forward pass,
                the same gradients.
            schedule: after the warmup, "cosine" down to min_lr_ratio, or "wsd" (the peak, then linear
                to min_lr_ratio over the last decay_fraction), over the budget done: trainer.max_steps,
                else trainer.max_time (training time) (shared/train/schedule.py).
            decay_fraction: wsd: the last fraction of the budget over which the rate decays.
            max_new_tokens: tokens generated at most per validation/test example.
            sample_images: examples shown in samples/captions (0: none).
            word_dropout: in training, the fraction of the suffix's input tokens (those the model reads
                while writing the answer, never the ones it is scored on) replaced by a random text
                token. A decoder that can trust the words it just wrote learns "green" -> "circle" from
                them; one that cannot has to read the shape off the image, which is what a held-out
                colour-shape pair needs. Measured at 1200 steps: no gain, and repeated phrases at 0.25
                (BENCHMARKS.md, issue 13). 0 (the default) turns it off.
            answer_weight: the training loss weight of an answer's ids (and <|eos|>) after its caption
                (data.answer_after_caption), other ids 1: the answer is 1-2 of ~20 ids, and at 1 the decoder
                never learns to read it off its caption (BENCHMARKS.md, "Answers after the caption").
        """
        super().__init__(
            config or PaliGemmaConfig(),
            optimizer,
            warmup_steps,
            min_lr_ratio,
            compile,
            gradient_checkpointing,
            schedule=schedule,
            decay_fraction=decay_fraction,
        )
        if vision_lr_multiplier < 0:
            raise UserError(f"vision_lr_multiplier must be >= 0, got {vision_lr_multiplier}")
        if max_new_tokens <= 0:
            raise UserError(f"max_new_tokens must be positive, got {max_new_tokens}")
        if not 0 <= word_dropout < 1:
            raise UserError(f"word_dropout must be in [0, 1), got {word_dropout}")
        if answer_weight <= 0:
            raise UserError(f"answer_weight must be positive, got {answer_weight}")
        if init_from and vision_init_from:
            raise UserError(
                "set init_from (a whole captioner) or vision_init_from (an image tower), not both"
            )
        if lora is not None and not init_from:  # the shared check would name the text key, model.init_from
            raise UserError(
                "LoRA fine-tunes a base captioner: set model.init_args.init_from to its checkpoint"
            )
        set_lora(self, lora, init_from)
        self.caption_exact, self.vqa_acc, self.bleu = MeanMetric(), MeanMetric(), BLEUScore(n_gram=4)
        self._counts = torch.zeros(2, dtype=torch.long)  # (captions, answers) scored this epoch
        self._samples: list[tuple] = []

    def build_model(self) -> PaliGemma:
        return PaliGemma(self.config)

    def load_initial_weights(self) -> None:
        """`init_from`: the whole captioner, always (a LoRA checkpoint holds adapters only, so its
        evaluation and resume need the base too). `vision_init_from`: the image tower of a SigLIP or
        captioner checkpoint, when fitting only (a resumed run then loads its own weights; an
        evaluation scores the checkpoint it is given)."""
        if self.hparams.get("init_from"):
            from vision_lm.checkpoint import load_captioner_weights

            load_captioner_weights(self.model, self.hparams.init_from)
            rank_zero_info(f"captioner initialised from {self.hparams.init_from}")
            return
        path = self.hparams.vision_init_from
        if not path or self._trainer is None or self.trainer.state.fn != "fit":
            return
        from vision_lm.checkpoint import vision_tower_state

        state = vision_tower_state(path, self.config.vision)
        missing, unexpected = self.model.vision.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise UserError(f"{path}: image tower weights do not fit (missing {missing[:3]})")
        rank_zero_info(f"image tower initialised from {path} ({len(state)} tensors)")

    def frozen_modules(self) -> list[nn.Module]:
        return [self.model.vision] if self.hparams.vision_lr_multiplier == 0 else []

    def param_group_options(self) -> dict:
        factor = self.hparams.vision_lr_multiplier
        return {"lr_multipliers": {"vision.": factor} if factor not in (0, 1) else None}

    def setup(self, stage: str) -> None:
        """Give the data the model's image size and text length (it decodes splits lazily, after this)."""
        dm: CaptionData | None = self.data
        if dm is None:
            return
        if dm.mode == "contrastive":
            raise UserError("the captioner needs data.mode captioning, vqa or multitask (got contrastive)")
        if self.hparams.get("init_from"):  # a fine-tuned captioner reads the ids its base learnt
            from vision_lm.checkpoint import use_base_tokenizer

            use_base_tokenizer(dm, self.hparams.init_from)
        dm.bind(self.config.vision.image_size, self.config.decoder.max_len)
        if self.hparams.get("answer_weight", 1.0) != 1 and not dm.answer_after_caption:
            raise UserError(
                "model.answer_weight weighs answers after captions: set data.answer_after_caption"
            )
        check_decoder_lengths(dm.tokenizer, self.config.decoder, self.hparams.max_new_tokens)

    def count_batch(self, batch) -> dict[str, int]:
        B, T = batch["input_ids"].shape
        return {"images": B, "tokens": B * (T + self.config.n_image_tokens)}

    def forward(self, pixel_values, input_ids, prefix_len):
        return self.model(pixel_values, input_ids, prefix_len)

    # ------------------------------------------------------------------ training
    def training_step(self, batch, batch_idx):
        ids = batch["input_ids"]
        rate = self.hparams.get("word_dropout")
        seen = drop_suffix_words(ids, batch["loss_mask"], self.data.tokenizer, rate) if rate else ids
        logits = self.model(batch["pixel_values"], seen, batch["prefix_len"])
        w, mask = self.hparams.get("answer_weight", 1.0), batch["loss_mask"]
        weight = text_batch.answer_weights(ids, mask, self.data.tokenizer, w) if w != 1 else None
        loss = suffix_loss(logits, ids, mask, weight)  # scored on the true ids
        self.log("train/loss", loss, prog_bar=True)
        return loss

    # ------------------------------------------------------------------ evaluation
    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def _eval_step(self, batch, split: str) -> None:
        pixels, ids, prefix_len = batch["pixel_values"], batch["input_ids"], batch["prefix_len"]
        img = self.model.encode_image(pixels)
        loss = suffix_loss(self.model(pixels, ids, prefix_len, image_tokens=img), ids, batch["loss_mask"])
        self.log(f"{split}/loss", loss, prog_bar=True, sync_dist=True, batch_size=ids.shape[0])
        if self.trainer.sanity_checking:
            return  # an untrained model's texts say nothing; spare the time
        tok = self.data.tokenizer
        rows, cut, masks = ids.tolist(), prefix_len.tolist(), batch["loss_mask"].tolist()
        prompts = [row[:n] for row, n in zip(rows, cut)]
        new = generate(
            self.model,
            pixels,
            prompts,
            self.hparams.max_new_tokens,
            tok.eos_id,
            tok.pad_id,
            image_tokens=img,
            vocab_limit=tok.vocab_size,
            banned_ids=special_ids(tok),
        )
        preds = [tok.decode(r).strip() for r in new]
        truths = [
            tok.decode([i for i, m in zip(r, m) if m and i != tok.eos_id]).strip()
            for r, m in zip(rows, masks)
        ]
        for b, task in enumerate(batch["task"].tolist()):
            # an answer after its caption (data.answer_after_caption) is scored alone
            read = answer_of if task == VQA and self.data.answer_after_caption else (lambda t: t)
            hit = float(read(preds[b]) == read(truths[b]))
            (self.caption_exact if task == CAPTION else self.vqa_acc).update(hit)
            self._counts[task] += 1
            if task == CAPTION:
                self.bleu.update([preds[b]], [[truths[b]]])
            if self._want_sample(task):
                prompt = tok.decode(prompts[b][1:-1])
                self._samples.append((pixels[b].cpu(), prompt, preds[b], truths[b], task))

    def _want_sample(self, task: int) -> bool:
        """Up to sample_images examples, half captions and half answers when the data has both."""
        k = self.hparams.sample_images
        share = (k + 1) // 2 if self.data.mode == "multitask" else k
        return len(self._samples) < k and sum(s[-1] == task for s in self._samples) < share

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The base's model type, config and tokenizer, plus the order its captions were trained in and
        whether its answers follow a caption."""
        super().on_save_checkpoint(checkpoint)
        if self.data is not None:
            caption_order.save(checkpoint, self.data.caption_order)
            if self.data.answer_after_caption:
                checkpoint[AFTER_CAPTION_KEY] = True

    def check_checkpoint(self, checkpoint: dict) -> None:
        if self.data is not None:
            caption_order.check(checkpoint, self.data.caption_order)

    def on_validation_epoch_end(self):
        self._log_generation("val")

    def on_test_epoch_end(self):
        self._log_generation("test")

    def _log_generation(self, split: str) -> None:
        counts = self.all_gather(self._counts.to(self.device))  # every rank gets the same totals
        counts = counts.sum(0) if counts.dim() > 1 else counts
        if counts[CAPTION] > 0:
            self.log(f"{split}/caption_exact", self.caption_exact.compute(), sync_dist=True)
            self.log(f"{split}/bleu", self.bleu.compute(), sync_dist=True)
        if counts[VQA] > 0:
            self.log(f"{split}/vqa_acc", self.vqa_acc.compute(), sync_dist=True)
        for metric in (self.caption_exact, self.vqa_acc, self.bleu):
            metric.reset()
        self._counts.zero_()
        samples, self._samples = self._samples, []
        tb = self._tensorboard()
        if samples and tb is not None and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            px, prompts, preds, truths, _ = zip(*samples)
            tb.add_image(
                "samples/captions", caption_grid(torch.stack(px), prompts, preds, truths), self.global_step
            )
