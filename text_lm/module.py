"""`LanguageModelModule`: the training system around `Llama` (loss, metrics, optimizer, samples).

Loss = next-token cross-entropy + aux_loss_coef * MoE load-balancing loss
       + z_loss_coef * router z-loss.
Metrics (ARCHITECTURE.md section 5): train/loss, train/aux_loss, train/grad_norm, val/loss,
val/ppl, val/bpb, moe/expert_load, samples/text. Bits per byte = NLL in bits over the
validation tokens / their UTF-8 bytes (exact from the shard's byte count): unlike
perplexity it compares models with different tokenizers.

The skeleton (config as plain data, model built in `configure_model`, optimizer groups and
schedule, grad-norm logging, self-contained checkpoints) is `shared/train/system.py`'s; the data
is read as `shared.train.data_contract.TextData`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from lightning.pytorch.cli import OptimizerCallable
from torchmetrics.text import Perplexity

from shared.errors import UserError
from shared.train.data_contract import TextData
from shared.train.finetune import LoRAConfig, set_lora
from shared.train.system import System
from text_lm.checkpoint import load_model_weights
from text_lm.config import LlamaConfig
from text_lm.generate import generate_tokens
from text_lm.model import Llama


class LanguageModelModule(System):
    model_type = "llama"
    data_contract = TextData

    def __init__(
        self,
        config: LlamaConfig | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.1,
        no_decay_embeddings: bool = True,
        aux_loss_coef: float = 0.01,
        z_loss_coef: float = 0.0,
        init_from: str | None = None,
        lora: LoRAConfig | None = None,
        compile: bool = False,
        gradient_checkpointing: bool = False,
        schedule: Literal["cosine", "wsd"] = "cosine",
        decay_fraction: float = 0.2,
        sample_prompt: str = "ROMEO:",
        sample_tokens: int = 64,
    ):
        """
        Args:
            config: the model (defaults to the llama-tiny preset).
            optimizer: optimizer class and its arguments (lr, betas, weight_decay); it receives our
                parameter groups (no weight decay on norms, biases and, by default, embeddings).
            warmup_steps: linear warmup steps before the cosine decay.
            min_lr_ratio: final learning rate as a fraction of the peak.
            no_decay_embeddings: exclude embedding tables from weight decay.
            aux_loss_coef: weight of the MoE load-balancing loss (Switch uses 0.01).
            z_loss_coef: weight of the MoE router z-loss (ST-MoE uses 0.001; 0 = off).
            init_from: fine-tune: a checkpoint (.ckpt) or export folder whose weights initialise
                the model (weights only; a fresh optimizer and schedule).
            lora: train low-rank adapters on the `init_from` base instead of every weight
                (shared/train/finetune.py): only the adapters train and are saved.
            compile: torch.compile the model (not the LightningModule).
            gradient_checkpointing: recompute each block's activations in the backward pass instead
                of keeping them: less memory, about one more forward pass, the same gradients.
            schedule: after the warmup, "cosine" down to min_lr_ratio, or "wsd" (warmup-stable-decay:
                the peak, then linear to min_lr_ratio over the last decay_fraction), as a function of
                the fraction of the budget done: trainer.max_steps if set, else trainer.max_time
                (training time, validation excluded) or budget.max_tokens (shared/train/schedule.py).
            decay_fraction: wsd: the last fraction of the budget over which the rate decays.
            sample_prompt: prompt of the sample generated and logged at each validation.
            sample_tokens: length of that sample (0 = no sample).
        """
        super().__init__(
            config or LlamaConfig.preset("llama-tiny"),
            optimizer,
            warmup_steps,
            min_lr_ratio,
            compile,
            gradient_checkpointing,
            schedule=schedule,
            decay_fraction=decay_fraction,
        )
        set_lora(self, lora, init_from)
        self.val_ppl = Perplexity(ignore_index=-100)  # -100: prompt and padding targets (no loss)
        self._expert_load: list[torch.Tensor] = []

    def build_model(self) -> Llama:
        return Llama(self.config)

    def load_initial_weights(self) -> None:
        if self.hparams.init_from:
            load_model_weights(self.model, self.hparams.init_from)

    def param_group_options(self) -> dict:
        return {"no_decay_embeddings": self.hparams.no_decay_embeddings}

    def setup(self, stage: str) -> None:
        dm: TextData | None = self.data
        if dm is None:
            return
        if dm.vocab_size > self.config.vocab_size:
            raise UserError(
                f"the data's tokenizer has {dm.vocab_size} tokens but model.config.vocab_size is "
                f"{self.config.vocab_size}; set --model.config.vocab_size {dm.vocab_size}"
            )
        if self.config.position == "learned" and dm.seq_len > self.config.max_seq_len:
            raise UserError(
                f"data.seq_len={dm.seq_len} exceeds model.config.max_seq_len={self.config.max_seq_len}"
            )

    def count_batch(self, batch) -> dict[str, int]:
        return {"tokens": batch[0].numel()}

    def forward(self, idx, targets=None):
        return self.model(idx, targets)

    def training_step(self, batch, batch_idx):
        x, y, *seg = batch  # (B, T) each; packed instruction data adds segments (text_lm/instruct.py)
        out = self.model(x, y, segments=seg[0] if seg else None, logits=False)  # fused head + loss
        loss = out.loss
        self.log("train/loss", out.loss, prog_bar=True)
        if out.aux_loss is not None:
            loss = loss + self.hparams.aux_loss_coef * out.aux_loss + self.hparams.z_loss_coef * out.z_loss
            self.log("train/aux_loss", out.aux_loss)
            self.log("train/z_loss", out.z_loss)
            self._expert_load.append(out.expert_load)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self._expert_load and self.global_step % self.trainer.log_every_n_steps == 0:
            load = torch.stack(self._expert_load).mean(0)  # (L, E)
            self._expert_load = []
            tb = self._tensorboard()
            if tb is not None:
                tb.add_histogram("moe/expert_load", load.float().cpu(), self.global_step)
            self.log("moe/max_expert_share", load.max())

    def validation_step(self, batch, batch_idx):
        return self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self._eval_step(batch, "test")

    def _eval_step(self, batch, split: str):
        x, y, *seg = batch
        out = self.model(x, y, segments=seg[0] if seg else None)
        self.val_ppl.update(out.logits.float(), y)
        self.log(f"{split}/loss", out.loss, prog_bar=True, sync_dist=True)
        self.log(f"{split}/ppl", self.val_ppl)
        dm: TextData | None = self.data
        if dm is not None:  # bits per byte = nats / ln 2 / (bytes per token) of the held-out split
            bpb = out.loss / math.log(2) / dm.bytes_per_token("val")
            self.log(f"{split}/bpb", bpb, prog_bar=True, sync_dist=True)
        return out.loss

    def on_validation_epoch_end(self):
        n = self.hparams.sample_tokens
        dm: TextData | None = self.data
        tok = dm.tokenizer if dm is not None else None
        if n <= 0 or tok is None or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        text = self.sample(tok, self.hparams.sample_prompt, n)
        tb = self._tensorboard()
        if tb is not None:
            tb.add_text("samples/text", text.replace("\n", "  \n"), self.global_step)

    @torch.no_grad()
    def sample(self, tok, prompt: str, n: int) -> str:
        was_training = self.model.training
        self.model.eval()
        ids = torch.tensor([tok.encode(prompt)], device=self.device)
        g = torch.Generator(device=self.device).manual_seed(0)
        new = [
            int(t)
            for t in generate_tokens(
                self.model, ids, n, temperature=0.8, top_k=50, generator=g, vocab_limit=tok.vocab_size
            )
        ]
        self.model.train(was_training)
        return prompt + tok.decode(new)
