"""The text model every CLI test trains: small enough for seconds on one CPU core.

Any shipped text YAML plus these overrides; vocabulary 320 is the `shakespeare_bpe` fixture's
(tests/conftest.py). Heads, sampling, validation and checkpointing are left to each test.
"""

TINY_TEXT = [
    "--model.config.vocab_size", "320", "--model.config.dim", "32", "--model.config.n_layers", "2",
    "--model.config.max_seq_len", "32", "--data.seq_len", "32", "--data.batch_size", "4",
    "--trainer.precision", "32", "--trainer.log_every_n_steps", "1",
]  # fmt: skip
