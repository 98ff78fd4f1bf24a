"""The running daemon: coordinator, scheduler, signals, systemd notify, HTTP and metrics."""
