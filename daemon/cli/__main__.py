"""`python -m daemon.cli` is `mls-sync`."""

from daemon.cli import main

main()
