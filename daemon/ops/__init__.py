"""The operations layer: every operation a person or program can ask for, with its rules and
its errors, on the store. The CLI and the /v1 API only parse, call `Operations`, and render
what it returns (docs/architecture.md)."""
