"""The status page: read-only HTML served by the daemon beside /status (docs/status-page.md)."""
