"""Schemathesis hooks for tests/reliability/test_api_fuzz.py (loaded through
SCHEMATHESIS_HOOKS): JSON lines bodies (the bulk import) are sent as the text they are, as
schemathesis sends text/csv."""

from __future__ import annotations

import schemathesis

schemathesis.serializer.alias("application/x-ndjson", "text/plain")
