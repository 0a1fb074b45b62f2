"""``python -m zoo_core.cli`` (what torchrun launches: ``torchrun --nproc-per-node 2 -m zoo_core.cli train ...``)."""

from zoo_core.cli import main

main()
