"""Real receivers on loopback for delivery tests: an HTTP server that checks
Standard Webhooks signatures and can fail on purpose."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class WebhookReceiver:
    """Records every request. `fail_first` requests are answered with
    `fail_status` (and `retry_after`); `hold` seconds delay the answer to
    the first request (a slow receiver). Signatures are verified with the
    Standard Webhooks reference implementation when a secret is given."""

    def __init__(
        self,
        secret: str = "",
        fail_first: int = 0,
        fail_status: int = 503,
        retry_after: str = "",
        hold: float = 0.0,
        port: int = 0,
    ):
        self.secret = secret
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.retry_after = retry_after
        self.hold = hold
        self.requests: list[dict] = []  # every request: headers, body, answer
        self.accepted: list[dict] = []  # bodies of the requests answered 2xx
        self.bad_signatures = 0
        # (perf_counter at arrival, message) of every accepted request.
        self.arrivals: list[tuple[float, dict]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server interface
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver._answer(headers, body)
                if status == 200 and receiver.hold:
                    hold, receiver.hold = receiver.hold, 0.0
                    time.sleep(hold)
                self.send_response(status)
                if status != 200 and receiver.retry_after:
                    self.send_header("Retry-After", receiver.retry_after)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"no")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _answer(self, headers: dict, body: bytes) -> int:
        with self._lock:
            entry = {"headers": headers, "body": body}
            self.requests.append(entry)
            if self.secret:
                try:
                    Webhook(self.secret).verify(body, headers)
                except WebhookVerificationError:
                    self.bad_signatures += 1
                    entry["answer"] = 401
                    return 401
            if self.fail_first > 0:
                self.fail_first -= 1
                entry["answer"] = self.fail_status
                return self.fail_status
            entry["answer"] = 200
            message = json.loads(body)
            self.arrivals.append((time.perf_counter(), message))
            self.accepted.append(message)
            return 200

    def messages(self) -> list[dict]:
        with self._lock:
            return list(self.accepted)

    def wait_for(self, predicate, timeout: float = 60.0) -> list[dict]:
        """Waits until predicate(accepted messages) holds; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.messages()
            if predicate(messages):
                return messages
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out; {len(messages)} accepted of {len(self.requests)} requests"
                )
            time.sleep(0.1)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
