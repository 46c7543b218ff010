"""Experiments: programs that use the library to answer a question (the GPT-2 -> Llama ladder).

They import `shared`, `text_lm` and `vision_lm`; the library never imports them (tests/test_layers.py
checks it). `text-lm ladder` reaches `experiments.ladder.run` through the dispatcher's command table,
an import string, so the command stays where the README says without an import circle.
"""
