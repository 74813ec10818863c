"""``/__heartbeat__`` in S3 mode with the indexer apart: it says when no indexer is alive
(no pass finished lately, none running) and when staged uploads wait for one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.indexer_health import IndexerHealth
from gateway.settings import AuthSettings, Settings
from indexer.config import SettingsError, StoreSettings
from indexer.job import Indexer
from indexer.last_pass import MARKER_KEY, read_last_pass
from indexer.lease import Lease
from indexer.s3_store import S3Store
from indexer.stores import Regions
from tests.gateway.auth_helpers import clients_file_entries
from tests.gateway.test_download import assert_problem
from tests.system import System, Uploaded
from tests.test_configuration import assert_one_line, run


def s3_system(store: S3Store, tmp_path: Path, **settings: object) -> System:
    """A gateway on S3 with no embedded indexer (as deployed), and an indexer apart."""
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps(clients_file_entries()))
    configured = Settings(
        stores=StoreSettings(s3_regions=((store.region, store.bucket),)),
        auth=AuthSettings(clients_file=clients, jwt_secret="s" * 32),
        **({"heartbeat_recheck_seconds": 0} | settings),  # type: ignore[arg-type]
    )
    regions = Regions([store])
    app = create_app(configured, regions)
    client = TestClient(app, follow_redirects=False, raise_server_exceptions=False)
    return System(client, regions, Indexer(regions))


def test_no_indexer_pass_fails_the_heartbeat_until_one_ends(
    s3_store: S3Store, tmp_path: Path
) -> None:
    system = s3_system(s3_store, tmp_path)
    body = assert_problem(system.client.get("/__heartbeat__"), 503)
    assert body["detail"] == "Failed checks: indexer"
    assert body["checks"] == {"store:us-east-1": "ok", "indexer": "stale"}
    assert body["details"] == {
        "indexer": {"last_pass_age": None, "running": False, "uploads_waiting": False}
    }
    system.indexer.run_once(check=False)
    response = system.client.get("/__heartbeat__")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"store:us-east-1": "ok", "indexer": "ok"}
    details = response.json()["details"]["indexer"]
    assert 0 <= details["last_pass_age"] < 60
    assert details["running"] is False
    assert "status/" not in response.text
    assert s3_store.bucket not in response.text


def test_an_upload_waiting_with_no_pass_fails_the_heartbeat(
    s3_store: S3Store, tmp_path: Path
) -> None:
    system = s3_system(s3_store, tmp_path)
    system.indexer.run_once(check=False)
    marker = read_last_pass(s3_store)
    assert marker is not None
    regions = Regions([s3_store])

    def health(at: float) -> IndexerHealth:
        return IndexerHealth(regions, max_pass_age=900, max_upload_wait=300, clock=lambda: at)

    assert health(marker.finished + 299).check().status == "ok"
    upload = Uploaded("tool.bin", b"staged bytes", "public")
    put_url = system.post([upload]).json()["result"]["files"]["tool.bin"]["put_url"]
    assert system.put(put_url, upload.data) == 200
    fresh = health(marker.started + 299).check()
    assert (fresh.status, fresh.uploads_waiting) == ("ok", True)  # a pass is due any moment
    late = health(marker.started + 301).check()
    assert (late.status, late.uploads_waiting) == ("uploads-waiting", True)
    assert health(marker.finished + 901).check().status == "stale"
    # A pass verifies it: nothing waits any more, and the marker is new.
    system.indexer.run_once(check=False)
    assert system.download(upload.digest)[1] == upload.data
    after = health(marker.started + 301).check()
    assert (after.status, after.uploads_waiting) == ("ok", False)


def test_a_running_pass_keeps_the_indexer_alive(s3_store: S3Store, tmp_path: Path) -> None:
    regions = Regions([s3_store])
    Indexer(regions).run_once(check=False)
    marker = read_last_pass(s3_store)
    assert marker is not None
    later = marker.finished + 3600  # a long consistency check, say
    health = IndexerHealth(regions, max_pass_age=900, max_upload_wait=300, clock=lambda: later)
    assert health.check().status == "stale"
    with Lease(s3_store, seconds=7200):  # renewed while the pass runs
        state = health.check()
        assert (state.status, state.running) == ("ok", True)


def test_an_unreadable_marker_counts_as_no_pass(s3_store: S3Store, tmp_path: Path) -> None:
    s3_store.put(MARKER_KEY, b"not json")
    system = s3_system(s3_store, tmp_path)
    body = assert_problem(system.client.get("/__heartbeat__"), 503)
    assert body["checks"]["indexer"] == "stale"


def test_the_check_is_off_where_the_gateway_indexes_or_when_disabled(
    s3_store: S3Store, tmp_path: Path
) -> None:
    for settings in ({"embedded_indexer": True}, {"heartbeat_indexer_seconds": 0}):
        system = s3_system(s3_store, tmp_path, **settings)
        response = system.client.get("/__heartbeat__")
        assert response.status_code == 200, response.text
        assert response.json()["checks"] == {"store:us-east-1": "ok"}
    assert not Settings().checks_indexer  # the embedded default


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TOOLTOOL_HEARTBEAT_INDEXER_SECONDS", "-1"),
        ("TOOLTOOL_HEARTBEAT_INDEXER_SECONDS", "soon"),
        ("TOOLTOOL_HEARTBEAT_UPLOAD_SECONDS", "0"),
        ("TOOLTOOL_HEARTBEAT_UPLOAD_SECONDS", "999999999"),
    ],
)
def test_thresholds_are_checked_settings(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name}: "):
        Settings.from_environ({name: value})
    assert Settings.from_environ({}).heartbeat_indexer_seconds == 900
    assert Settings.from_environ({}).heartbeat_upload_seconds == 300


def test_a_bad_threshold_stops_the_gateway_with_one_line(tmp_path: Path) -> None:
    environ = {"TOOLTOOL_DATA_DIR": str(tmp_path), "TOOLTOOL_HEARTBEAT_UPLOAD_SECONDS": "0"}
    assert_one_line(
        run("gateway.cli", environ),
        "SettingsError: TOOLTOOL_HEARTBEAT_UPLOAD_SECONDS: must be at least 1",
    )
