"""The reports folder over HTTP, so the brief links in the Dagster UI open with a click.

Browsers refuse to follow a ``file://`` link from an ``http://`` page (the Dagster UI), so the
asset's metadata links each brief to ``[reports] url`` instead, and ``churn-assets report
--serve`` serves ``$CHURN_HOME/reports`` there: static files, read-only, on 127.0.0.1 by default.
The pages are self-contained, so a reverse proxy or any static file server does the same job.
"""

from __future__ import annotations

import functools
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

# The port of the default `[reports] url`, used when that URL names none.
DEFAULT_PORT = 8765


def page_url(base_url: str, reports_dir: Path, page: Path) -> str:
    """Where ``page`` (a file under ``reports_dir``) is served under ``base_url``."""
    relative = Path(page).resolve().relative_to(Path(reports_dir).resolve())
    return f"{base_url.rstrip('/')}/{quote(relative.as_posix())}"


class _Handler(SimpleHTTPRequestHandler):
    """Static files only: no directory listings, and one quiet log line per request."""

    def list_directory(self, path):
        self.send_error(404, "no listing here: ask for a brief by its day, e.g. "
                        "/brief/2026-12-06.html")
        return None

    def end_headers(self):
        # A rendered day can be re-rendered (a rerun of its scores): never serve a stale copy.
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format, *args):
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def reports_server(reports_dir: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT
                   ) -> ThreadingHTTPServer:
    """A server of ``reports_dir`` bound to ``host:port`` (port 0: any free one); call
    ``serve_forever`` to answer and ``shutdown`` to stop."""
    Path(reports_dir).mkdir(parents=True, exist_ok=True)
    handler = functools.partial(_Handler, directory=str(reports_dir))
    return ThreadingHTTPServer((host, port), handler)
