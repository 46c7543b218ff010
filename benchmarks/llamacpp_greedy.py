"""Greedy tokens from llama.cpp itself (its Python binding), run in benchmarks/.venv-llamacpp.

    benchmarks/.venv-llamacpp/bin/python benchmarks/llamacpp_greedy.py FILE.gguf PROMPT N

Prints one JSON line: {"prompt_ids": llama.cpp's tokenization of PROMPT, "tokens": N greedy ids}.
Used by tests/text_lm/test_gguf_export.py and benchmarks/gguf_llamacpp.py; imports nothing of ours.
"""

import json
import sys

from llama_cpp import Llama


def main() -> None:
    path, prompt, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    llm = Llama(model_path=path, n_ctx=256, n_threads=1, verbose=False, logits_all=False)
    ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=False)
    out = []
    for t in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):
        out.append(int(t))
        if len(out) == n:
            break
    print(json.dumps({"prompt_ids": ids, "tokens": out}))


if __name__ == "__main__":
    main()
