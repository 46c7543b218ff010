"""`text-lm`: the text track's command line.

    text-lm prepare ...                    raw text -> tokenizer + token shards
    text-lm prepare-merge DIR ...          join the parts of a multi-machine prepare
    text-lm tokenizer train|encode|decode  our byte-level BPE tokenizer
    text-lm fit|validate|test -c CONFIG    LightningCLI training / evaluation
    text-lm generate --checkpoint PATH --prompt TEXT
    text-lm export-hf --checkpoint PATH --out DIR      a folder transformers loads (+ tokenizer files)
    text-lm export-gguf --checkpoint PATH --out F.gguf one file llama.cpp / Ollama run
    text-lm ladder ...                     GPT-2 -> Llama ladder (see configs/text/ladder)
    text-lm make-task --out DIR            the next-line fine-tuning task from the plays (split by play)
    text-lm finetune fit|test -c CONFIG    fine-tune on instruction/chat jsonl (LoRA or full)
    text-lm chat --checkpoint PATH         talk to a model (chat template, streaming)

Dispatch, help and the lazy imports are `shared/train/dispatch.py`'s: each command is an import
string, imported only when run, so `--help` and the tokenizer commands never import Lightning.
`ladder` is an experiment, not library code: it lives in `experiments/ladder/` and is reached only
through its name string here, so the library holds no static import of `experiments` (experiments
import the library, never the reverse; tests/test_layers.py checks both and that there is no cycle).
"""

from __future__ import annotations

from shared.train.dispatch import dispatch

USAGE = __doc__.split("\n\n")[1]
COMMANDS = {
    "prepare": "text_lm.prepare:main",
    "prepare-merge": "text_lm.prepare_merge:main",
    "tokenizer": "text_lm.tokenizer_cli:main",
    "generate": "text_lm.generate_cli:main",
    "export-hf": "text_lm.export_cli:main",
    "export-gguf": "text_lm.export_gguf_cli:main",
    "ladder": "experiments.ladder.run:main",
    "make-task": "text_lm.task_cli:main",
    "finetune": "text_lm.finetune_cli:main",
    "chat": "text_lm.chat_cli:main",
}


def main(argv: list[str] | None = None) -> None:
    dispatch(
        "text-lm",
        USAGE,
        COMMANDS,
        system="text_lm.module:LanguageModelModule",
        datamodule="text_lm.data:TextDataModule",
        argv=argv,
    )


if __name__ == "__main__":
    main()
