"""Serve the framecast web page (and optionally a data folder) on 127.0.0.1.

A static file server built on :mod:`http.server` with the MIME types the page needs
(``.mjs``/``.js`` as ``text/javascript``, ``.wasm`` as ``application/wasm``, ``.onnx`` as
``application/octet-stream``) and the cross-origin isolation headers (COOP/COEP), which
give the page fine-grained ``performance.now()`` timings for the latency figures.

``web/`` is served at ``/``; ``--data DIR`` additionally serves ``DIR`` at ``/data/``, so an
exported model and a session elsewhere can be opened with
``/index.html?model=data/motion_correction.onnx&session=data/session.json``.

Usage (from anywhere)::

    python web/serve.py                # http://127.0.0.1:8000/
    python web/serve.py --port 0       # a free port, printed on stdout
    python web/serve.py --data /tmp/export

The test (``tests/web/test_browser.py``) imports this file and calls :func:`start_server`.
"""

from __future__ import annotations

import argparse
import http.server
import os
import posixpath
import sys
import threading
import urllib.parse
from functools import partial
from pathlib import Path

WEB_ROOT = Path(__file__).resolve().parent
DATA_PREFIX = "/data/"

MIME_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".wasm": "application/wasm",
    ".onnx": "application/octet-stream",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static files from ``directory``; ``/data/...`` from ``data_dir`` when one is given."""

    # The base class's guess_type looks the suffix up here (as given, then lower-cased).
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}

    def __init__(self, *args, data_dir: str | None = None, quiet: bool = False, **kwargs):
        self.data_dir = data_dir
        self.quiet = quiet
        super().__init__(*args, **kwargs)

    def translate_path(self, path: str) -> str:
        clean = urllib.parse.urlsplit(path).path
        if self.data_dir is not None and clean.startswith(DATA_PREFIX):
            # Same normalisation as the base class (no "..", no absolute escapes), rooted at
            # the data folder instead of the page folder.
            rest = posixpath.normpath(urllib.parse.unquote(clean[len(DATA_PREFIX) :]))
            parts = [p for p in rest.split("/") if p and p not in (".", "..")]
            return os.path.join(self.data_dir, *parts)
        return super().translate_path(path)

    def end_headers(self) -> None:
        # Cross-origin isolation: every resource is same-origin, so this costs nothing and
        # lifts Chromium's 100 µs coarsening of performance.now() to 5 µs.
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (base-class name)
        if not self.quiet:
            super().log_message(format, *args)


def make_server(
    port: int = 0,
    root: str | os.PathLike = WEB_ROOT,
    data_dir: str | os.PathLike | None = None,
    host: str = "127.0.0.1",
    quiet: bool = False,
) -> http.server.ThreadingHTTPServer:
    """A server on ``host:port`` (0: a free port; see ``server.server_address``)."""
    handler = partial(
        Handler,
        directory=str(root),
        data_dir=None if data_dir is None else str(data_dir),
        quiet=quiet,
    )
    return http.server.ThreadingHTTPServer((host, port), handler)


def start_server(
    root: str | os.PathLike = WEB_ROOT,
    data_dir: str | os.PathLike | None = None,
    quiet: bool = True,
) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve in a daemon thread on a free port; returns the server and its base URL.

    Stop it with ``server.shutdown(); server.server_close()``.
    """
    server = make_server(0, root, data_dir, quiet=quiet)
    thread = threading.Thread(target=server.serve_forever, name="framecast-web", daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    return server, f"http://{host}:{port}/"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--root", default=str(WEB_ROOT), help="folder served at / (web/)")
    parser.add_argument("--data", default=None, help="folder served at /data/")
    parser.add_argument("--quiet", action="store_true", help="no request log")
    args = parser.parse_args(argv)
    server = make_server(args.port, args.root, args.data, quiet=args.quiet)
    host, port = server.server_address[:2]
    print(f"serving {args.root} at http://{host}:{port}/", flush=True)
    if args.data:
        print(f"serving {args.data} at http://{host}:{port}{DATA_PREFIX}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
