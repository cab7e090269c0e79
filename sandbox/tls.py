"""TLS for the sandbox: a throwaway certificate authority and a server certificate issued by it.

Real Slack is `https://` and `wss://` only. With a `SandboxTLS` the sandbox serves both over TLS on its
loopback ports, so the bot's certificate checks, CA bundle and proxy tunnelling run for real. The CA
lives only in memory and in one PEM file (`ca_file`) that a client must be told to trust (for the bot:
`SSL_CERT_FILE`). `trustme` is imported here only, so a sandbox without TLS does not need it.
"""

from __future__ import annotations

import datetime
import ssl
import tempfile
from pathlib import Path

DEFAULT_NAMES = ("127.0.0.1", "localhost")


class SandboxTLS:
    """One throwaway CA, one server certificate for `names`, and the CA's PEM file to trust.

    `expired=True` issues a certificate whose validity ended yesterday; `names` other than the
    sandbox host give a certificate for the wrong host name (both for testing clients' checks).
    """

    def __init__(self, names: tuple[str, ...] = DEFAULT_NAMES, *, expired: bool = False) -> None:
        import trustme  # noqa: PLC0415 - a test/dev dependency, needed only when TLS is on

        self._ca = trustme.CA(organization_name="Nonstop sandbox (throwaway)")
        now = datetime.datetime.now(datetime.UTC)
        window = {"not_before": now - datetime.timedelta(days=3), "not_after": now - datetime.timedelta(days=1)}
        self._cert = self._ca.issue_cert(*names, **(window if expired else {}))
        self._dir = tempfile.TemporaryDirectory(prefix="nonstop-sandbox-ca-")
        self.ca_file = str(Path(self._dir.name) / "sandbox-ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_file)

    def server_context(self) -> ssl.SSLContext:
        """The context the sandbox's listeners wrap their connections in.

        It sends no TLS 1.3 session tickets (nothing here resumes a session). A ticket arrives just after
        the handshake, when a client that reads in one thread and writes in another (websockets' sync
        client, slack_sdk's builtin one) sends its first request: OpenSSL cannot read and write one
        connection from two threads at once, and the request is lost now and then (the upgrade is never
        answered; the reader stays blocked in its TLS read). Measured on 2026-12-03 with six threads
        opening `raw_connect`s for 45 s: with tickets 5 failures and 2 threads stuck in about 2,800
        connections, without them none in about 2,700."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(context)
        context.num_tickets = 0
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA only (for the test harness's own requests)."""
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        return context

    def cleanup(self) -> None:
        self._dir.cleanup()
