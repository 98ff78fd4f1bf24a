"""E-mail notifications: the outbox the mail worker fills from the event log, the messages it
composes and the SMTP sender (docs/email.md)."""
