"""The page at the HTTP API's root: web/ served as static files, outside the API and its authorizer.

In AWS the page is hosted apart from the API; locally the API's own server serves it, so `make dev`
has one address to open. Only GET and HEAD, only files inside the root (after decoding and resolving
symbolic links), only the types listed here; anything else is a plain 404 that says nothing more.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

Response = tuple[int, dict[str, str], bytes]

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}
# Paths that are the API's even when no route matches: they answer as API Gateway does.
API_PREFIXES = ("/api/", "/ws", "/.well-known/")


class StaticSite:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def serves(self, method: str, path: str) -> bool:
        """Whether a request is the page's rather than the API's (the caller has found no route)."""
        return method in ("GET", "HEAD") and not path.startswith(API_PREFIXES)

    def get(self, raw_path: str) -> Response:
        """The file at `raw_path` (URL-encoded, as on the request line): 200, or 404 for anything
        missing, outside the root, hidden, or of a type not listed."""
        path = unquote(raw_path.split("?", 1)[0])
        if "\x00" in path or "\\" in path:
            return _not_found()
        parts = [p for p in path.split("/") if p]
        if any(p.startswith(".") for p in parts):  # "..", and hidden files
            return _not_found()
        target = self.root.joinpath(*parts)
        if not parts or target.is_dir():
            target = target / "index.html"
        try:
            resolved = target.resolve(strict=True)
        except (OSError, RuntimeError):
            return _not_found()
        content_type = CONTENT_TYPES.get(resolved.suffix.lower())
        if not resolved.is_relative_to(self.root) or not resolved.is_file() or content_type is None:
            return _not_found()
        headers = {
            "content-type": content_type,
            "cache-control": "no-cache",  # a page under development: always the current file
            "x-content-type-options": "nosniff",
        }
        return 200, headers, resolved.read_bytes()


def _not_found() -> Response:
    return 404, {"content-type": "text/plain; charset=utf-8"}, b"Not Found\n"
