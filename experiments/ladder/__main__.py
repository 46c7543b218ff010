"""`python -m experiments.ladder ...` is `text-lm ladder ...`."""

from experiments.ladder.run import main

main()
