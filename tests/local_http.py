"""A local HTTP server for the download tests (tests/test_data_fetch.py, tests/test_reliability_download.py)."""

from __future__ import annotations

import http.server
import threading


class LocalServer:
    """Serves a request-handler class on 127.0.0.1 (a free port) from a daemon thread; a context manager."""

    def _serve(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/datasets/ciao.zip"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
