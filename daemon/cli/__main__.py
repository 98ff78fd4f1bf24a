"""`python -m daemon.cli` is `mls-sync` (`python -m daemon` tunes the collector before the
CLI is imported: daemon/launch.py)."""

from daemon.launch import main

main()
