"""Training and command-line plumbing both tracks use: the LightningCLI, callbacks, optimizers and
schedules, checkpoint reading and writing, Hugging Face export folders, run-folder reading.

May import Lightning, `shared.nn` and `shared.tokenizer`; never a track.
"""
