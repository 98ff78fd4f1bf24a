"""The running daemon: coordinator, clock, signals, systemd notify, HTTP and metrics."""
