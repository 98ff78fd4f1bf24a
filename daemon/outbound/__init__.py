"""Signed outbound webhooks: the event log, followed per endpoint and delivered in order
(docs/webhooks.md). Pure rules (urls, retry, selection, signing) apart from the I/O (sender,
worker)."""
