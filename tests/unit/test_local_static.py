"""The page at the local HTTP API's root (ems_local.static): what it serves and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from ems_local.static import StaticSite
from ems_local.template import ROOT


@pytest.fixture
def site(tmp_path: Path) -> StaticSite:
    root = tmp_path / "web"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "app.js").write_text("console.log(1)")
    (root / "style.css").write_text("body{}")
    (root / "sub" / "index.html").write_text("sub")
    (root / ".env").write_text("SECRET=1")
    (root / "notes.md").write_text("# not a type we serve")
    (tmp_path / "secret.txt").write_text("outside the root")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    return StaticSite(root)


@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [
        ("/", "text/html; charset=utf-8", b"<h1>home</h1>"),
        ("/index.html", "text/html; charset=utf-8", b"<h1>home</h1>"),
        ("/app.js", "text/javascript; charset=utf-8", b"console.log(1)"),
        ("/style.css?v=2", "text/css; charset=utf-8", b"body{}"),
        ("/sub/", "text/html; charset=utf-8", b"sub"),
        ("/%73tyle.css", "text/css; charset=utf-8", b"body{}"),  # percent-encoded names are decoded
    ],
)
def test_files_with_their_content_types(site: StaticSite, path: str, content_type: str, body: bytes) -> None:
    status, headers, raw = site.get(path)
    assert (status, headers["content-type"], raw) == (200, content_type, body)
    assert headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "/missing.js",
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/sub/../../secret.txt",
        "/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/..\\secret.txt",
        "/link.txt",  # a symbolic link out of the root
        "/.env",  # hidden files
        "/notes.md",  # a type not listed
        "/index.html%00.js",
    ],
)
def test_refused_as_not_found(site: StaticSite, path: str) -> None:
    status, _, raw = site.get(path)
    assert (status, raw) == (404, b"Not Found\n")
    assert b"outside" not in raw and b"SECRET" not in raw


def test_the_api_keeps_its_paths() -> None:
    site = StaticSite(ROOT / "web")
    assert site.serves("GET", "/") and site.serves("HEAD", "/app.js")
    assert not site.serves("POST", "/")
    assert not any(site.serves("GET", p) for p in ("/api/v1/nothing", "/ws", "/.well-known/jwks.json"))


def test_the_projects_page_is_served() -> None:
    site = StaticSite(ROOT / "web")
    for path in ("/", "/app.js", "/style.css"):
        assert site.get(path)[0] == 200, path
    assert b"/api/v1/overview" in site.get("/app.js")[2]
