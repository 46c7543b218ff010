"""llama.cpp runs our GGUF export: the same greedy tokens as `text-lm generate --temperature 0`.

    python benchmarks/gguf_llamacpp.py --checkpoint runs/demo/llama-tiny/version_0/checkpoints/last.ckpt

llama.cpp's Python binding (llama-cpp-python, built from source: ~10-20 minutes on 2 cores) lives in
its own environment, benchmarks/.venv-llamacpp, created on first use (`--setup` only creates it);
it never becomes a project dependency. For each dtype (f32, f16, q8_0) and prompt the script
writes the GGUF file, lets llama.cpp tokenise the prompt and decode greedily
(`benchmarks/llamacpp_greedy.py`, in that environment), and compares with our tokeniser and our
KV-cached greedy decoding: the prompt ids must be equal, and the table gives how many of the N
generated tokens agree before the first difference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-llamacpp"
PY = VENV / "bin" / "python"
PROMPTS = ["ROMEO:\nBut soft, what light", "First Citizen:\nBefore we proceed any further", "KING LEAR:\n"]


def setup() -> None:
    if (
        PY.exists()
        and subprocess.run([str(PY), "-c", "import llama_cpp"], capture_output=True).returncode == 0
    ):
        return
    print(f"building llama-cpp-python into {VENV} (10-20 minutes on 2 cores) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    env = {
        "CMAKE_ARGS": "-DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF"
    }
    subprocess.run(
        [str(PY), "-m", "pip", "install", "--quiet", "llama-cpp-python"],
        check=True,
        env={**os.environ, **env},
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="a text-lm checkpoint (dense Llama)")
    p.add_argument("--tokens", type=int, default=48, help="greedy tokens compared per prompt")
    p.add_argument("--setup", action="store_true", help="only build the llama.cpp environment")
    args = p.parse_args()
    setup()
    if args.setup:
        return
    if not args.checkpoint:
        p.error("--checkpoint is required")
    sys.path.insert(0, str(HERE.parent))
    import torch

    from text_lm.checkpoint import model_from_checkpoint
    from text_lm.generate import generate_tokens
    from text_lm.gguf_export import write_gguf

    model, tok = model_from_checkpoint(args.checkpoint)
    version = subprocess.run([str(PY), "-c", "import llama_cpp; print(llama_cpp.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    print(f"model {model.config.name} ({model.num_params() / 1e6:.1f}M), llama-cpp-python {version}, "
          f"{args.tokens} greedy tokens per prompt\n")  # fmt: skip
    print("| dtype | file size | prompt ids equal | tokens equal before the first difference (per prompt) |")
    print("|---|---:|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("f32", "f16", "q8_0"):
            path = Path(tmp) / f"model-{dtype}.gguf"
            write_gguf(model, tok, path, dtype)
            same_prompt, agree = True, []
            for prompt in PROMPTS:
                ids = tok.encode(prompt)
                ours = [
                    int(t) for t in generate_tokens(model, torch.tensor([ids]), args.tokens, temperature=0.0)
                ]
                res = subprocess.run([str(PY), str(HERE / "llamacpp_greedy.py"), str(path), prompt, str(args.tokens)],
                                     capture_output=True, text=True, check=True)  # fmt: skip
                theirs = json.loads(res.stdout.strip().splitlines()[-1])
                same_prompt &= theirs["prompt_ids"] == ids
                n = next((i for i, (a, b) in enumerate(zip(ours, theirs["tokens"])) if a != b), len(ours))
                agree.append(f"{n}/{len(ours)}")
            mib = path.stat().st_size / 2**20
            print(f"| {dtype} | {mib:.1f} MiB | {'yes' if same_prompt else 'NO'} | {', '.join(agree)} |")


if __name__ == "__main__":
    main()
