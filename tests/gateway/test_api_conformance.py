"""schemathesis against a running gateway, from the description it serves at /openapi.json.

A real uvicorn server on loopback over the local store, with public and
internal files imported and a clients file: every described operation is
sent positive cases (data the description allows, the files' own digests
and batch ids among them) and negative ones (data it refuses), anonymously
and with a Bearer token holding every scope (Basic for ``POST /token``).
Every answer must be no 5xx, a documented status, the documented content
type, headers and body schema. Deterministic (derandomized) and bounded: a
few examples per operation and mode.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.settings import AuthSettings
from indexer.site.job import render_site
from tests.conftest import LiveServer, free_port
from tests.gateway.auth_helpers import basic, clients_file_entries
from tests.gateway.conftest import Gateway, random_bytes
from tests.system import Uploaded

EXAMPLES = 12  # per operation, caller and kind of case (positive, negative, naming stored things)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
]


@dataclass
class Known:
    """What the store holds, for cases to name: path parameters' values by name."""

    values: dict[str, list[str]]

    def strategy(self, operation: Any) -> st.SearchStrategy[Any] | None:
        """Positive cases of `operation` naming what the store holds, or None."""
        names = [name for name in re.findall(r"\{(\w+)\}", operation.path) if name in self.values]
        if not names:
            return None
        chosen = st.fixed_dictionaries({name: st.sampled_from(self.values[name]) for name in names})
        return chosen.flatmap(
            lambda values: operation.as_strategy(GenerationMode.POSITIVE, path_parameters=values)
        )


@pytest.fixture
def running(make_gateway: Any, live_server: Any, tmp_path: Path) -> tuple[LiveServer, Known]:
    """A gateway serving public and internal files, a batch and the site's pages."""
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps(clients_file_entries()))
    gateway: Gateway = make_gateway(
        auth=AuthSettings(clients_file=clients, jwt_secret="s" * 32), embedded_indexer=False
    )
    public = gateway.add(random_bytes(), "public", "a.bin")
    internal = gateway.add(random_bytes(), "internal", "b.bin")
    server = live_server(gateway.app(), free_port())
    batch = requests.post(
        f"{server.url}/upload",
        json={"message": "m", "files": {"a.bin": Uploaded("a.bin", b"", "public").entry()}},
        headers={"Authorization": f"Bearer {_token(server.url)}"},
        timeout=10,
    ).json()["result"]["id"]
    render_site(gateway.regions.index)
    known = Known(
        {
            "digest": [public, internal],
            "batch_id": [str(batch)],
            "path": ["", "index.html", f"{public}/", f"{internal}/", f"{batch}/"],
        }
    )
    return server, known


def _token(url: str) -> str:
    """A token holding every tooltool scope."""
    answer = requests.post(f"{url}/token", headers={"Authorization": basic("admin")}, timeout=10)
    return str(answer.json()["token"])


def _run(schema: Any, url: str, headers: dict[str, str], known: Known, found: _Found) -> None:
    session = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        sent = dict(headers)
        if label == "POST /token":
            sent["Authorization"] = basic("admin")
        _check(operation, label, url, session, sent, known, found)


def _check(
    operation: Any,
    label: str,
    url: str,
    session: requests.Session,
    headers: dict[str, str],
    known: Known,
    found: _Found,
) -> None:
    strategies = [
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ]
    named = known.strategy(operation)
    strategies += [] if named is None else [named]
    strategy = st.one_of(strategies)

    @settings(
        max_examples=EXAMPLES * len(strategies),
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        found.counts[label] += 1
        response = case.call(base_url=url, session=session, headers=headers, timeout=10)
        found.statuses[label, response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as exc:  # every operation's failures, not just the first
            found.failures.append(f"{label}: {exc}")

    check()


@dataclass
class _Found:
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)


def test_every_operation_conforms_anonymous_and_authenticated(
    running: tuple[LiveServer, Known],
) -> None:
    server, known = running
    # As served (from_url would leave out the operation serving the description itself).
    description = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(description)
    found = _Found()
    for headers in ({}, {"Authorization": f"Bearer {_token(server.url)}"}):
        _run(schema, server.url, headers, known, found)
    counts = found.counts
    print(f"schemathesis: {sum(counts.values())} cases over {len(counts)} operations", dict(counts))
    print(sorted(found.statuses.items()))
    assert not found.failures, "\n".join(found.failures[:20])
    described = {result.ok().label for result in schema.get_all_operations()}
    assert set(counts) == described
    assert len(described) == 32


def test_the_cli_coverage_phase_finds_nothing(
    running: tuple[LiveServer, Known], tmp_path: Path
) -> None:
    """``st run``'s coverage phase, as CI would run it: boundary and malformed values for
    every parameter and body, undescribed methods (405 with a whole ``Allow``), missing
    headers. Every check but positive_data_acceptance: sizes must be written as integers
    (``130.0`` is refused), which JSON Schema cannot say."""
    server, _ = running
    st_cli = Path(sys.executable).parent / "st"
    result = subprocess.run(
        [
            str(st_cli),
            "run",
            f"{server.url}/openapi.json",
            "--phases",
            "coverage",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--generation-deterministic",
            "--header",
            f"Authorization: Bearer {_token(server.url)}",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,  # its cache (.schemathesis/) stays out of the repository
    )
    summary = result.stdout[-3000:]
    print(summary)
    assert result.returncode == 0, summary
    assert "Tested: 31" in summary  # every operation but the one serving the description
    counted = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert counted is not None, summary
    assert counted[1] == counted[2], summary
