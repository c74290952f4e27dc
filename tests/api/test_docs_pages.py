"""/docs (Swagger UI) and /redoc (ReDoc) work offline: every file they load comes from the server,
out of the package, and those files are the vendored ones."""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tomllib
from pathlib import Path
from urllib.parse import urljoin

import pytest
from fastapi.testclient import TestClient

from taskledger.api.app import DOCS_ASSETS, STATIC_DIR

ROOT = Path(__file__).resolve().parents[2]
CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
}


def _references(html: str) -> list[str]:
    """Every URL the page loads or points at: src and href attributes, and Swagger UI's
    ``url:`` settings."""
    found = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    found += re.findall(r"""\burl\s*:\s*['"]([^'"]+)['"]""", html)
    return found


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_only_local_files(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    references = _references(html)
    assets = [r for r in references if r.startswith(DOCS_ASSETS + "/")]
    assert len(assets) >= (3 if page == "/docs" else 2), references
    for reference in references:
        assert reference.startswith("/") and not reference.startswith("//"), reference
        url = urljoin(page, reference)
        answer = client.get(url)
        assert answer.status_code == 200, url
        suffix = Path(reference).suffix
        if suffix in CONTENT_TYPES:
            assert answer.headers["content-type"].startswith(CONTENT_TYPES[suffix]), url
            assert answer.content == (STATIC_DIR / url.removeprefix(DOCS_ASSETS + "/")).read_bytes()


def test_swagger_ui_gets_its_oauth2_redirect_page(client: TestClient) -> None:
    assert "/docs/oauth2-redirect" in client.get("/docs").text
    response = client.get("/docs/oauth2-redirect")
    assert response.status_code == 200
    assert "swaggerUIRedirectOauth2" in response.text


def test_the_assets_answer_only_reads(client: TestClient) -> None:
    url = f"{DOCS_ASSETS}/redoc/redoc.standalone.js"
    assert client.head(url).status_code == 200
    response = client.post(url)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert response.json() == {"detail": "Method Not Allowed"}
    missing = client.get(f"{DOCS_ASSETS}/swagger-ui/nothing.js")
    assert missing.status_code == 404
    assert client.get(f"{DOCS_ASSETS}/../app.py").status_code == 404


def test_the_vendored_files_are_the_ones_listed() -> None:
    """static/README.md gives each file's sha256; the files are those, and there are no others."""
    listed = dict(
        re.findall(r"^\| `([\w./-]+)` \| `[^`]+` \| `([0-9a-f]{64})` \|$", _readme(), re.M)
    )
    present = {
        p.relative_to(STATIC_DIR).as_posix()
        for p in STATIC_DIR.rglob("*")
        if p.is_file() and p.name != "README.md"
    }
    assert set(listed) == present
    for name, digest in listed.items():
        assert hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest() == digest, name


def test_the_readme_names_the_pinned_versions() -> None:
    versions = dict(
        re.findall(r"^\| `(swagger-ui-dist|redoc)` \| (\d+\.\d+\.\d+) \|", _readme(), re.M)
    )
    assert set(versions) == {"swagger-ui-dist", "redoc"}
    assert versions["redoc"].startswith("2.")  # FastAPI's ReDoc page is written for 2.x


def test_the_assets_are_package_data() -> None:
    """pyproject.toml ships every vendored file in the wheel."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["taskledger"]
    package = STATIC_DIR.parent.parent  # src/taskledger
    for path in STATIC_DIR.rglob("*"):
        if path.is_file():
            relative = path.relative_to(package).as_posix()
            assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative


def _readme() -> str:
    return (STATIC_DIR / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"])
def test_a_write_to_a_docs_page_names_the_methods_it_allows(client: TestClient, page: str) -> None:
    response = client.post(page)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
