"""`python -m hurricane`: the command-line interface (also the pod entrypoint)."""

from hurricane.cli import main

main()
