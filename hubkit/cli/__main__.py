"""`python -m hubkit.cli …` (also under `torchrun` and `accelerate launch`)."""

from hubkit.cli.app import main

main()
