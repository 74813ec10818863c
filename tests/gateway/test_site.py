"""The browsable site through the gateway: the public view at ``/``, the internal one at
``/internal/``, re-rendered when the catalog changes."""

from __future__ import annotations

import gzip
import os

import pytest

from indexer.site.job import SiteJob, render_site
from indexer.site.publish import content_type
from tests.gateway.auth_helpers import hawk
from tests.gateway.test_manage import patch
from tests.recording_store import writes_failing
from tests.system import BASE, System, Uploaded


def setup_files(system: System, job: SiteJob | None = None) -> tuple[Uploaded, Uploaded]:
    public = Uploaded("clang-17.tar.xz", os.urandom(300), "public")
    internal = Uploaded("secret-sdk.zip", os.urandom(200), "internal")
    system.upload([public], message="clang 17")
    system.upload([internal], message="the secret sdk", client_id="everything")
    system.indexer.run_once(check=False)
    if job is None:
        render_site(system.regions.index)
    else:
        job.refresh()
    return public, internal


def get(system: System, path: str, client_id: str | None = None, **headers: str):
    if client_id is not None:
        headers["Authorization"] = hawk(client_id, BASE + path)
    return system.client.get(path, headers=headers)


def test_the_public_site(system: System) -> None:
    public, internal = setup_files(system)
    home = get(system, "/")
    assert home.status_code == 200
    assert home.headers["content-type"] == "text/html; charset=utf-8"
    assert "clang 17" in home.text
    assert get(system, f"/f/{public.digest}/").status_code == 200
    assert get(system, f"/f/{internal.digest}/").status_code == 404
    files = get(system, "/files/").text
    assert public.name in files
    assert internal.name not in files
    assert get(system, "/assets/style.css").headers["content-type"] == "text/css; charset=utf-8"
    assert get(system, "/f/%2e%2e/manifest.json").status_code == 404


def test_pages_are_revalidated_with_their_etag(system: System) -> None:
    setup_files(system)
    first = get(system, "/")
    assert first.headers["cache-control"] == "public, max-age=60"
    again = get(system, "/", **{"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


def test_the_internal_view_needs_a_token(system: System) -> None:
    _, internal = setup_files(system)
    anonymous = get(system, "/internal/")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"].startswith("text/html")
    assert "token" in anonymous.text
    assert internal.name not in anonymous.text
    assert get(system, "/internal/", client_id="nobody").status_code == 403
    shown = get(system, f"/internal/f/{internal.digest}/", client_id="reader")
    assert shown.status_code == 200
    assert internal.name in shown.text
    assert shown.headers["cache-control"] == "private, max-age=60"
    assert get(system, "/internal").status_code == 307


def test_a_file_made_internal_leaves_the_public_site_at_the_next_pass(system: System) -> None:
    job = SiteJob(system.regions.index)
    public, _ = setup_files(system, job)
    flip = [{"op": "set_visibility", "visibility": "internal"}]
    assert patch(system, public.digest, flip).status_code == 200
    assert job.refresh() is not None  # what the pass after it does
    assert get(system, f"/f/{public.digest}/").status_code == 404
    for path in ("/", "/files/", "/batches/"):
        assert public.name not in get(system, path).text
        assert "clang 17" not in get(system, path).text


def test_nothing_new_writes_nothing(system: System) -> None:
    job = SiteJob(system.regions.index)
    setup_files(system, job)
    store = system.regions.index
    before = {info.key: info.etag for info in store.list("")}
    assert job.refresh() is None
    assert SiteJob(store).refresh() is None  # a new process: it loads, renders nothing
    assert {info.key: info.etag for info in store.list("")} == before
    again = render_site(store)
    assert all(published.written == 0 for published in again.values())


def test_a_publish_killed_before_its_manifest_leaves_nothing_behind(system: System) -> None:
    from indexer.stores import StoreUnavailable

    setup_files(system)
    soon = Uploaded("soon-secret.zip", os.urandom(100), "public")
    system.upload([soon], message="soon a secret")
    system.indexer.run_once(check=False)
    store = system.regions.index
    with writes_failing(store, "site/state/public/manifest/"), pytest.raises(StoreUnavailable):
        render_site(store)  # killed after its pages, before its manifests
    flip = [{"op": "set_visibility", "visibility": "internal"}]
    assert patch(system, soon.digest, flip).status_code == 200
    SiteJob(store).refresh()
    for info in store.list("site/public/"):
        text = store.get(info.key)[0]
        if text.startswith(b"\x1f\x8b"):  # the search index's files are gzipped
            text = gzip.decompress(text)
        for secret in (soon.digest.encode(), b"soon-secret", b"soon a secret"):
            assert secret not in text, info.key
    assert get(system, f"/f/{soon.digest}/").status_code == 404


def test_the_search_bundle_is_served_with_its_types(system: System) -> None:
    setup_files(system)
    store = system.regions.index
    bundle = [info.key.removeprefix("site/public/") for info in store.list("site/public/pagefind/")]
    fragment = next(path for path in bundle if path.endswith(".pf_fragment"))
    types = {
        "pagefind/pagefind-ui.js": "text/javascript; charset=utf-8",
        "pagefind/pagefind-ui.css": "text/css; charset=utf-8",
        "pagefind/pagefind-entry.json": "application/json",
        "pagefind/wasm.en.pagefind": "application/octet-stream",
        fragment: "application/octet-stream",
    }
    for path, expected in types.items():
        answer = get(system, f"/{path}")
        assert answer.status_code == 200, path
        assert answer.headers["content-type"] == expected, path
        assert "content-encoding" not in answer.headers, path  # Pagefind unzips them itself
    internal = get(system, "/internal/pagefind/pagefind.js", client_id="reader")
    assert internal.status_code == 200
    assert content_type("x/module.wasm") == "application/wasm"
