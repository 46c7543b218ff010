"""`SigLIPModule`: the training system around `SigLIP` (loss, evaluation, logging, optimizer).

Logged (ARCHITECTURE.md section 5): train/loss, train/temperature (exp(t), the cosine's
multiplier, 10 at the start), train/bias (b), train/grad_norm, val/loss, and at the end of
each validation: val/zero_shot_acc (and, on a split that mixes seen and held-out colour-shape pairs
such as the shapes validation split with its own held-out pair, val/zero_shot_acc_seen and
val/zero_shot_acc_held_out: the latter is for model selection), val/recall@{1,5}_{i2t,t2i} and a sigmoid(logit) image
of the first 16 pairs (val/similarity, TensorBoard). `test` evaluates the test split,
which for the shapes set holds the held-out colour-shape combinations, as test/*.

Zero-shot accuracy uses the images whose label names the whole image: with the shapes set,
the one-shape scenes (their class is unambiguous; a busy scene has several right answers),
classified among ALL classes, held-out ones included (`vision_lm/evaluation.py`).

On the shared system base (`shared/train/system.py`): this file holds the steps and metrics only.
Every step goes through `SigLIP.forward` (what `compile` compiles) and `SigLIP.loss`, which scores
this rank's images against every rank's texts under DDP; the logit formula is `losses.pair_logits`.
"""

from __future__ import annotations

from typing import Literal

import torch
from lightning.pytorch.cli import OptimizerCallable

from shared.errors import UserError
from shared.train.data_contract import ImageTextData
from shared.train.system import System
from vision_lm.config import SigLIPConfig
from vision_lm.evaluation import embed_classes, pair_matrix, recall_at_k, zero_shot_accuracy
from vision_lm.losses import gather, siglip_loss, world
from vision_lm.siglip import SigLIP, SigLIPOutput
from vision_lm.text_batch import TextEncoder


class SigLIPModule(System):
    model_type = "siglip"
    data_contract = ImageTextData

    def __init__(
        self,
        config: SigLIPConfig | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.1,
        lr_multipliers: dict[str, float] | None = None,
        same_caption_positive: bool = True,
        hard_negatives: bool = False,
        hard_negative_groups: dict[str, list[str]] | None = None,
        compile: bool = False,
        gradient_checkpointing: bool = False,
        schedule: Literal["cosine", "wsd"] = "cosine",
        decay_fraction: float = 0.2,
        similarity_images: int = 16,
    ):
        """
        Args:
            config: the model (defaults to the siglip-tiny preset's values).
            optimizer: optimizer class and arguments (lr, betas, weight_decay); it receives our
                parameter groups (no weight decay on norms, biases, t, b and embedding tables).
            warmup_steps: linear warmup steps before the cosine decay.
            min_lr_ratio: final learning rate as a fraction of the peak.
            lr_multipliers: parameter-name prefix -> learning-rate factor, e.g. {"logit_": 10.0} lets t
                (logit_scale) and b (logit_bias) move faster than Adam's ~lr per step would in a short run.
            same_caption_positive: in the sigmoid loss, count two pairs with the same caption as
                matches (the shapes set repeats captions; SigLIP proper: false).
            hard_negatives: add, per training image, one swapped-attribute caption as an extra negative
                text (`vision_lm/hard_negatives.py`: "a red circle left of a blue square" -> "a blue
                circle left of a red square"); the held-out pairs of dataset_info.json are never drawn.
            hard_negative_groups: attribute group -> interchangeable words, e.g. {"color": ["red",
                "blue"], "shape": ["circle", "square"]} (None: the colors/shapes/sizes lists of the data
                set's dataset_info.json).
            compile: torch.compile the model (not the LightningModule).
            gradient_checkpointing: recompute each block's activations (both towers) in the backward
                pass instead of keeping them: less memory, about one more forward pass, same gradients.
            schedule: after the warmup, "cosine" down to min_lr_ratio, or "wsd" (the peak, then linear
                to min_lr_ratio over the last decay_fraction), over the budget done: trainer.max_steps,
                else trainer.max_time (training time) (shared/train/schedule.py).
            decay_fraction: wsd: the last fraction of the budget over which the rate decays.
            similarity_images: pairs in the val/similarity image (0: none).
        """
        super().__init__(
            config or SigLIPConfig(),
            optimizer,
            warmup_steps,
            min_lr_ratio,
            compile,
            gradient_checkpointing,
            schedule=schedule,
            decay_fraction=decay_fraction,
        )
        self._outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._swapper = None

    def build_model(self) -> SigLIP:
        return SigLIP(self.config)

    def param_group_options(self) -> dict:
        return {"lr_multipliers": self.hparams.lr_multipliers}

    def setup(self, stage: str) -> None:
        """Give the data the model's image size and text length (it decodes splits lazily, after this)."""
        if self.hparams.hard_negatives and self.config.loss != "sigmoid":
            raise UserError("hard_negatives needs the sigmoid loss (model.config.loss: sigmoid)")
        dm: ImageTextData | None = self.data
        if dm is None:
            return
        dm.bind(self.config.vision.image_size, self.config.text.max_len)
        if dm.tokenizer.vocab_size > self.config.text.vocab_size:
            raise UserError(
                f"the tokenizer has {dm.tokenizer.vocab_size} tokens but model.config.text.vocab_size is "
                f"{self.config.text.vocab_size}; raise it to at least {dm.tokenizer.vocab_size}"
            )

    def count_batch(self, batch) -> dict[str, int]:
        return {"images": batch["pixel_values"].shape[0]}

    def forward(self, pixel_values, input_ids):
        return self.model(pixel_values, input_ids)

    # ------------------------------------------------------------------ training
    def _loss(self, out: SigLIPOutput, ids: torch.Tensor, across_ranks: bool) -> torch.Tensor:
        return self.model.loss(out, ids if self.hparams.same_caption_positive else None, across_ranks)

    def _hard_negative_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Caption ids (B, T) -> (M, T) ids of swapped-attribute negatives (M <= B: a caption with no
        attribute to swap, or whose negative would not fit max_len, gives none)."""
        import random

        from vision_lm.hard_negatives import AttributeSwapper, groups_from_info

        dm, tok = self.data, self.data.tokenizer
        if self._swapper is None:
            info = getattr(dm, "info", None) or {}
            groups = self.hparams.hard_negative_groups or groups_from_info(info)
            if not groups:
                raise UserError(
                    "hard_negatives needs attribute groups: set model.init_args.hard_negative_groups "
                    "(e.g. {color: [red, blue], shape: [circle, square]}) or a dataset_info.json listing them"
                )
            forbidden = [p for k, v in info.items() if "held_out" in k and isinstance(v, list) for p in v]
            self._swapper = AttributeSwapper(groups, forbidden)  # test and validation held-out pairs
            self._neg_encoder = TextEncoder(tok, self.config.text.max_len)
        rng = random.Random(f"{self.global_step}-{self.global_rank}")
        rows = []
        for row in ids.tolist():
            text = tok.decode(row[: row.index(tok.eos_id)] if tok.eos_id in row else row)
            neg = self._swapper.negative(text, rng)
            if neg is not None and len(self._neg_encoder.ids(neg)) < self.config.text.max_len:
                rows.append(self._neg_encoder.caption(neg))
        return torch.tensor(rows, dtype=torch.long, device=ids.device).view(len(rows), ids.shape[1])

    def training_step(self, batch, batch_idx):
        out = self.model(batch["pixel_values"], batch["input_ids"])
        loss = self._loss(out, batch["input_ids"], across_ranks=True)
        if self.hparams.hard_negatives:
            ids = batch["input_ids"]
            neg_ids = self._hard_negative_ids(ids)  # (M, T)
            if len(neg_ids):
                neg = self.model.encode_text(neg_ids)  # (M, E)
                same = (ids[:, None, :] == neg_ids[None, :, :]).all(-1)  # (B, M): a negative that is
                # another image's caption is that image's positive
                loss = loss + siglip_loss(
                    out.image_embeds, neg, self.model.logit_scale, self.model.logit_bias, positives=same
                )
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/temperature", self.model.logit_scale.detach().exp().squeeze())
        self.log("train/bias", self.model.logit_bias.detach().squeeze())
        return loss

    # ------------------------------------------------------------------ evaluation
    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def _eval_step(self, batch, split: str) -> None:
        out = self.model(batch["pixel_values"], batch["input_ids"])
        loss = self._loss(out, batch["input_ids"], across_ranks=False)
        img, txt = out.image_embeds, out.text_embeds
        self.log(f"{split}/loss", loss, prog_bar=True, sync_dist=True, batch_size=img.shape[0])
        self._outputs.append((img.float(), txt.float(), batch["index"]))

    def on_validation_epoch_end(self):
        self._evaluate("val")

    def on_test_epoch_end(self):
        self._evaluate("test")

    @torch.no_grad()
    def _evaluate(self, split: str) -> None:
        """Retrieval and zero-shot metrics over the whole split (every rank's share gathered)."""
        dm: ImageTextData | None = self.data
        if not self._outputs or dm is None:
            self._outputs = []
            return
        img, txt, idx = (torch.cat(x) for x in zip(*self._outputs))
        self._outputs = []
        if world()[1] > 1:  # the sampler pads with repeats: gather, then keep each record once
            img, txt, idx = gather(img, False), gather(txt, False), gather(idx, False)
        first: dict[int, int] = {}  # record index -> its first row
        for row, i in enumerate(idx.tolist()):
            first.setdefault(i, row)
        keep = torch.tensor([first[i] for i in sorted(first)], device=img.device)
        img, txt = img[keep], txt[keep]  # (N, E) in record order
        recs = [dm.records(split)[i] for i in sorted(first)]
        img_rows, txt_rows, positives = pair_matrix([r.image for r in recs], [r.text for r in recs])
        sim = img[img_rows] @ txt[txt_rows].T  # (I, T)
        for name, value in recall_at_k(sim, positives).items():
            self.log(f"{split}/{name}", value, sync_dist=True)  # the same on every rank: quiets Lightning
        classes = dm.zero_shot_classes
        where = {c: k for k, c in enumerate(classes)}
        rows = [r for r in img_rows if recs[r].single and recs[r].label in where]
        if rows:
            encoder = TextEncoder(dm.tokenizer, self.config.text.max_len)
            class_emb = embed_classes(self.model, encoder, classes, dm.zero_shot_templates)
            labels = torch.tensor([where[recs[r].label] for r in rows])
            self.log(
                f"{split}/zero_shot_acc", zero_shot_accuracy(img[rows], labels, class_emb), sync_dist=True
            )
            held = torch.tensor([bool(getattr(recs[r], "held_out", False)) for r in rows])
            if held.any() and not held.all():  # a split mixing seen and held-out pairs: each part alone
                for name, part in (("seen", ~held), ("held_out", held)):
                    acc = zero_shot_accuracy(img[rows][part], labels[part], class_emb)
                    self.log(f"{split}/zero_shot_acc_{name}", acc, sync_dist=True)
        self._log_similarity(split, img, txt, recs)

    def _log_similarity(self, split, img, txt, recs) -> None:
        k = min(self.hparams.similarity_images, len(recs))
        tb = self._tensorboard()
        if k == 0 or tb is None or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        probs = torch.sigmoid(self.model.logits(img[:k], txt[:k]))  # (k, k): rows images, columns texts
        pixels = probs.repeat_interleave(8, 0).repeat_interleave(8, 1)[None]  # (1, 8k, 8k) grey image
        tb.add_image(f"{split}/similarity", pixels.cpu(), self.global_step)
        tb.add_text(
            f"{split}/similarity_texts", "  \n".join(f"{i}. {r.text}" for i, r in enumerate(recs[:k]))
        )

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The base's model type, config and tokenizer, plus the zero-shot templates (plain data)."""
        super().on_save_checkpoint(checkpoint)
        dm: ImageTextData | None = self.data
        if dm is not None and dm.tokenizer is not None:
            checkpoint["zero_shot_templates"] = dm.zero_shot_templates
