"""`python -m daemon` is `mls-sync`, started as the console script starts it: through
daemon/launch.py before anything else is imported (`python -m daemon.cli` imports the CLI's
package first)."""

from daemon.launch import main

main()
