"""The one TLS context every HTTP client of a process verifies servers with (the MLS's, the
platforms', the CLI's to the daemon; SMTP has its own, daemon/mail/smtp.py).

As httpx builds it for a client that ignores the environment: certifi's roots, and no
SSL_CERT_FILE. Loading the roots is most of the cost of building a client (docs/benchmarks.md
"Building a client"), and httpx loads them again for every client it builds unless it is
given a context: a runtime opens one client per platform and one per MLS server, and each CLI
command opens a runtime. One context, built at first use, serves them all; an
`ssl.SSLContext` is made to be shared (the clients all speak HTTP/1.1, so the protocols
httpcore sets on it are the same for each).
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def verifying_context() -> ssl.SSLContext:
    return httpx.create_ssl_context(trust_env=False)
