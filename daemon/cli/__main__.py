"""`python -m daemon.cli` is `mls-sync`."""

from daemon.main import main

main()
