"""A real local HTTP server for the session runtime (no mocks): it answers each GET with the next
of the replies it was given (the last one repeats), slow, trickling, broken or fine, and records
the request headers. Retries, timeouts and credentials are behaviours of the socket layer that a
mock would only restate."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    body: bytes | None = None  # None: the server's document
    delay_s: float = 0.0  # before the status line
    trickle_s: float = 0.0  # between body bytes
    headers: tuple[tuple[str, str], ...] = ()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler still sleeping must not hold up teardown

    def handle_error(self, request, client_address):
        pass  # the client hanging up on a slow handler is the point of some tests


class RuntimeServer:
    """Serves ``document`` (the runtime JSON) at ``url`` until :meth:`close`; :meth:`reply` sets
    what the next requests get."""

    def __init__(self, document: bytes) -> None:
        self.document = document
        self.replies: list[Reply] = [Reply()]
        self.requests: list[dict[str, str]] = []
        self.stop = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                owner.requests.append(dict(self.headers))
                # Replies are consumed in order; the last one repeats.
                reply = owner.replies.pop(0) if len(owner.replies) > 1 else owner.replies[0]
                body = owner.document if reply.body is None else reply.body
                if reply.delay_s and owner.stop.wait(reply.delay_s):
                    return
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in reply.headers:
                    self.send_header(key, value)
                self.end_headers()
                if not reply.trickle_s:
                    self.wfile.write(body)
                    return
                for i in range(len(body)):
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                    if owner.stop.wait(reply.trickle_s):
                        return

            def log_message(self, format, *args) -> None:
                pass

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/runtime"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    def reply(self, *replies: Reply) -> RuntimeServer:
        self.replies = list(replies)
        return self

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
