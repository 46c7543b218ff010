"""Neural-network blocks, each written once: the stack's configuration, norms, RoPE, attention,
KV cache, masks, feed-forwards, MoE, the transformer stack, initialisation and sampling.

Imports torch (and `shared.errors`) only: no Lightning, no tokenizer, no track.
"""
