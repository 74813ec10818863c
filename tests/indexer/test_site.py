"""The browsable site's pages: what each view shows, escaping, determinism."""

from __future__ import annotations

import gzip
import os

from indexer.site.model import Site, build
from indexer.site.render import pages
from indexer.site.sources import SiteSources
from tests.gateway.test_manage import patch
from tests.system import System, Uploaded

HOSTILE = "\"'><img src=x onerror=alert(2)><b onmouseover=alert(3)>"
SCRIPT = "</textarea><script>alert(1)</script>"


def site_of(system: System, view: str) -> Site:
    sources = SiteSources(system.regions.index)
    sources.rebuild()
    return build(view, sources.files.values(), sources.batches.values(), sources.history)  # type: ignore[arg-type]


def rendered(system: System, view: str) -> dict[str, bytes]:
    return dict(pages(site_of(system, view)))


def site_text(site: dict[str, bytes]) -> str:
    """Every page as text, the search bundle's gzipped files unzipped (its index and
    WebAssembly are binary: their bytes are read as Latin-1, which keeps ASCII)."""
    texts = []
    for data in site.values():
        if data.startswith(b"\x1f\x8b"):
            data = gzip.decompress(data)
        try:
            texts.append(data.decode())
        except UnicodeDecodeError:
            texts.append(data.decode("latin-1"))
    return "\n".join(texts)


def uploaded(system: System) -> tuple[Uploaded, Uploaded]:
    public = Uploaded(f"gcc-{HOSTILE}.tar.xz", os.urandom(300), "public")
    internal = Uploaded("secret-sdk-9.zip", os.urandom(200), "internal")
    system.upload([public], message=f"public toolchain {HOSTILE} {SCRIPT}")
    system.upload([internal], message="the secret sdk message", client_id="everything")
    system.indexer.run_once(check=False)
    return public, internal


def test_the_public_site_shows_no_internal_file(system: System) -> None:
    public, internal = uploaded(system)
    site = rendered(system, "public")
    text = site_text(site)
    assert public.digest in text
    for secret in (internal.digest, internal.name, "the secret sdk message", "everything"):
        assert secret not in text
    assert f"f/{internal.digest}/index.html" not in site
    internal_site = rendered(system, "internal")
    assert f"f/{internal.digest}/index.html" in internal_site


def test_a_file_made_internal_leaves_the_public_site(system: System) -> None:
    public, _ = uploaded(system)
    flip = [{"op": "set_visibility", "visibility": "internal"}]
    assert patch(system, public.digest, flip).status_code == 200
    text = site_text(rendered(system, "public"))
    assert public.digest not in text
    assert "public toolchain" not in text


def test_user_text_renders_as_text(system: System) -> None:
    uploaded(system)
    for path, page in rendered(system, "internal").items():
        if path.endswith(".html"):
            text = page.decode()
            assert "<script>" not in text, path
            assert "<img" not in text, path
            assert "<b onmouseover" not in text, path


def test_the_same_sources_make_the_same_site(system: System) -> None:
    uploaded(system)
    assert rendered(system, "public") == rendered(system, "public")
    home = rendered(system, "public")["index.html"].decode()
    assert "<svg" in home
    assert 'lang="en"' in home
