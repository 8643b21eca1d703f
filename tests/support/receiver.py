"""Real HTTP servers for tests (http.server in a thread): a webhook receiver, fake upstreams."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import standardwebhooks

Handler = Callable[[str, dict[str, str], bytes], tuple[int, bytes, dict[str, str]]]
"""``(path, headers, body) → (status, body, headers)``."""


@contextmanager
def http_server(handler: Handler) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port; yields ``http://127.0.0.1:<port>``."""

    class Handle(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            if len(body) < length:
                return  # cut off (a killed sender): no request was made
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, out, extra = handler(self.path, headers, body)
            try:
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(out)
            except OSError:
                pass  # the sender went away (a killed server)

        do_PUT = do_POST

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handle)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def signed_by(secrets: list[str], headers: dict[str, str], body: bytes) -> str | None:
    """The first of ``secrets`` whose signature the ``standardwebhooks`` library finds in
    ``headers`` for ``body`` (timestamp within its 5-minute tolerance), or None."""
    for secret in secrets:
        try:
            standardwebhooks.Webhook(secret).verify(body, headers, json_parse=False)
        except standardwebhooks.WebhookVerificationError:
            continue
        return secret
    return None


@dataclass
class Delivery:
    path: str
    webhook_id: str
    headers: dict[str, str]
    body: bytes
    signed_by: str | None
    received_at: float = 0.0

    @property
    def verified(self) -> bool:
        return self.signed_by is not None

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    """Records webhook deliveries, checks their signature, answers as told per path.

    Signatures are checked with the ``standardwebhooks`` library against ``secret`` and
    any secret :meth:`accept` added (``Delivery.signed_by`` says which one matched).

    ``answers[path]`` lists the status of the 1st, 2nd, … request for one webhook-id on
    that path (the last one repeats); the default answers 200. Paths in ``hold`` keep
    their first request for each id waiting until :meth:`release` (the sender sees no
    answer). ``unique`` de-duplicates by ``webhook-id``, as a receiver should.
    """

    secret: str = ""
    answers: dict[str, list[int]] = field(default_factory=dict)
    hold: set[str] = field(default_factory=set)
    redirects: dict[str, str] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    held: int = 0
    base: str = ""
    secrets: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return self.base + path

    def accept(self, secret: str) -> None:
        """Verify later deliveries with ``secret`` too (a rotated one)."""
        with self._lock:
            self.secrets.append(secret)

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes,
                                                                             dict[str, str]]:
        msg_id = headers.get("webhook-id", "")
        received_at = time.time()
        with self._lock:
            secrets = [s for s in (self.secret, *self.secrets) if s]
        delivery = Delivery(path=path, webhook_id=msg_id, headers=headers, body=body,
                            signed_by=signed_by(secrets, headers, body),
                            received_at=received_at)
        with self._lock:
            n = sum(1 for d in self.deliveries if d.webhook_id == msg_id and d.path == path)
            self.deliveries.append(delivery)
            holding = path in self.hold and n == 0
            if holding:
                self.held += 1
        if holding:
            self._release.wait(60)
            return 200, b"{}", {}
        if path in self.redirects:
            return 302, b"", {"Location": self.url(self.redirects[path])}
        plan = self.answers.get(path, [200])
        return plan[min(n, len(plan) - 1)], b"{}", {}

    def release(self) -> None:
        self._release.set()

    def on(self, path: str) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.path == path]

    def unique(self, path: str | None = None) -> dict[str, Delivery]:
        """The first delivery of each webhook-id (a receiver's de-duplication)."""
        seen: dict[str, Delivery] = {}
        with self._lock:
            for d in self.deliveries:
                if path is None or d.path == path:
                    seen.setdefault(d.webhook_id, d)
        return seen


@contextmanager
def receiver(secret: str = "", **settings: Any) -> Iterator[Receiver]:
    r = Receiver(secret=secret, **settings)
    with http_server(r.handle) as base:
        r.base = base
        try:
            yield r
        finally:
            r.release()
