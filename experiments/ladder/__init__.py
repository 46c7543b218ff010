"""The architecture ladder: GPT-2 -> +RMSNorm -> +RoPE -> +SwiGLU -> +GQA -> +MoE on one budget.

run.py (`text-lm ladder`, or `python -m experiments.ladder`) plans and runs the rungs, rung.py trains and
scores one rung in its own process, report.py writes the table and the plot.
"""
