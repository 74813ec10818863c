"""``tooltool-indexer init``: what a deployment needs, checked and (``--create``) made."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.stub import Stubber

from indexer.cli import main
from indexer.provision import MADE, OK, PROBLEM, _bucket, inspect
from indexer.s3_store import S3Store
from indexer.stores import Regions
from tests.conftest import SECRET_KEY, SeaweedFS, unreachable_s3_store


@pytest.fixture
def new_buckets(seaweedfs: SeaweedFS) -> Iterator[dict[str, str]]:
    """Settings naming two buckets that do not exist yet (deleted at the end if made)."""
    names = [f"init-{secrets.token_hex(4)}-{side}" for side in ("east", "west")]
    yield seaweedfs.environ(("us-east-1", names[0]), ("us-west-2", names[1]))
    for name in names:
        try:
            seaweedfs.delete_bucket(name)
        except Exception:  # noqa: S112 - never made: nothing to delete
            continue


def run_init(
    environ: dict[str, str], capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, list[str], str]:
    code = main(["init", *args], environ)
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_missing_buckets_are_problems_until_made(
    new_buckets: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    east, west = (item.split(":")[1] for item in new_buckets["S3_REGIONS"].split(";"))
    code, lines, err = run_init(new_buckets, capsys)
    assert code == 4
    assert lines == [
        f"problem: us-east-1: no bucket {east} (tooltool-indexer init --create makes it)",
        f"problem: us-west-2: no bucket {west} (tooltool-indexer init --create makes it)",
    ]
    assert err.splitlines()[-1] == "InitError: 2 problem(s): see the lines above"

    code, lines, err = run_init(new_buckets, capsys, "--create")
    assert code == 0, (lines, err)
    # SeaweedFS has no public access block: a warning, not a problem.
    no_block = (
        "this S3 service does not implement the public access block: keep the bucket"
        " private by its own means (anonymous reads off)"
    )
    for region, bucket in (("us-east-1", east), ("us-west-2", west)):
        assert f"made: {region}: made bucket {bucket}" in lines
        assert f"warning: {region}: {no_block}" in lines
        assert f"ok: {region}: writable with these credentials" in lines
    assert "ok: us-east-1: lease locks/indexer.json: free" in lines
    assert "ok: us-east-1: audit log audit/head.json: 0 records" in lines
    assert lines[-1].startswith("warning: us-east-1: no indexer pass has finished yet")

    assert main(["run", "--no-check"], new_buckets) == 0  # the buckets work
    code, lines, _ = run_init(new_buckets, capsys)
    assert code == 0
    assert f"ok: us-east-1: bucket {east} exists" in lines
    assert lines[-1].startswith("ok: us-east-1: last indexer pass finished 20")
    assert not [line for line in lines if line.startswith(("made", "problem"))]


def test_wrong_credentials_are_one_problem_line_each(
    seaweedfs: SeaweedFS, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = seaweedfs.environ(("us-east-1", seaweedfs.new_bucket()))
    environ["S3_REGIONS_SECRET_ACCESS_KEY"] = "wrong-" + SECRET_KEY
    code, lines, err = run_init(environ, capsys, "--create")
    assert code == 4
    assert len(lines) == 1
    assert lines[0].startswith("problem: us-east-1: bucket test-")
    assert lines[0].endswith(": 403: access denied to these credentials")
    assert "Traceback" not in err
    assert SECRET_KEY not in err + "".join(lines)


def test_an_unreachable_endpoint_is_a_problem(capsys: pytest.CaptureFixture[str]) -> None:
    store = unreachable_s3_store()
    findings = inspect(Regions([store]))
    assert [(f.level, f.text) for f in findings] == [
        (PROBLEM, "bucket bucket-a: EndpointConnectionError: the endpoint cannot be reached")
    ]


def test_the_local_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    environ = {"TOOLTOOL_DATA_DIR": str(tmp_path / "data"), "TOOLTOOL_LOCAL_REGIONS": "east,west"}
    code, lines, _ = run_init(environ, capsys)
    assert code == 0
    assert lines[:2] == [f"ok: east: local directory {tmp_path / 'data' / 'east'}", lines[1]]
    assert "ok: west: writable with these credentials" in lines
    assert not list((tmp_path / "data" / "east").glob("locks/*"))  # the probe is gone


def test_public_access_is_blocked_where_the_service_has_the_setting(
    seaweedfs: SeaweedFS,
) -> None:
    """As AWS answers (botocore's own stubs: no AWS here): a bucket without the block is a
    problem, and --create puts it."""
    store = S3Store(seaweedfs.client(), "tools-east", region="us-east-1")
    flags = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
    open_block = {"PublicAccessBlockConfiguration": dict.fromkeys(flags, False)}
    closed = dict.fromkeys(flags, True)
    with Stubber(store.client) as stub:
        stub.add_response("head_bucket", {})
        stub.add_response("get_public_access_block", open_block)
        stub.add_response("get_bucket_versioning", {})
        found = list(_bucket(store, create=False))
        assert [(f.level, f.text) for f in found][:2] == [
            (OK, "bucket tools-east exists"),
            (
                PROBLEM,
                "public access not blocked (BlockPublicAcls, IgnorePublicAcls,"
                " BlockPublicPolicy, RestrictPublicBuckets off): tooltool-indexer init"
                " --create blocks it",
            ),
        ]
        stub.add_response("head_bucket", {})
        stub.add_client_error(
            "get_public_access_block", "NoSuchPublicAccessBlockConfiguration", http_status_code=404
        )
        stub.add_response(
            "put_public_access_block",
            {},
            {"Bucket": "tools-east", "PublicAccessBlockConfiguration": closed},
        )
        stub.add_response("get_bucket_versioning", {"Status": "Enabled"})
        stub.add_response("get_bucket_lifecycle_configuration", {"Rules": []})
        found = list(_bucket(store, create=True))
        assert [f.level for f in found] == [OK, MADE, OK, "warning"]
        assert found[-1].text.startswith("no lifecycle rule expires noncurrent versions")
        stub.assert_no_pending_responses()
