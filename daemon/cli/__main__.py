"""`python -m daemon.cli` is `mls-sync`."""

from daemon.launch import main

main()
