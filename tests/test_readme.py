"""The README's shell blocks, pasted in order into one bash, against a real gateway.

The README's rule: every ```sh block works when pasted in order on a fresh
machine, from the repository directory, while ``make run`` serves in another
terminal. This test builds that machine in a temporary directory: ``.venv``
links to the environment running the tests, and ``tooltool-gateway`` is started
there (so ``tooltool-data`` lands in the temporary directory, never in the
repository's). The environment is reduced to a fresh shell's, so nothing the
README forgets to set comes from the caller.

Only two lines are not run: the set-up commands ``make run`` (the test starts
the gateway itself, on a free port) and ``make test`` (which runs this test).
The README sets ``URL`` once, on one ``export URL=http://127.0.0.1:8000`` line;
the test rewrites that line to its gateway's port. Every block runs under
``set -euo pipefail``, all in one bash, so variables carry over as in a
terminal; markers around each block split the output per block.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SETUP_COMMANDS = ("make run", "make test")
URL_LINE = re.compile(r"^export URL=http://127\.0\.0\.1:8000$", re.MULTILINE)
MARKER = "@@readme-block"
# What a fresh login shell has; everything else (TOOLTOOL_*, S3_*, HOST, PORT,
# URL, BASH_ENV, …) is left out so the README must set what it uses.
KEPT_VARIABLES = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "TMPDIR", "TERM")
KEPT_PREFIXES = ("LC_", "PYENV_")
DIGEST_LINE = re.compile(r"^[0-9a-f]{128} \d+ (?P<name>\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    """One ```sh block of the README."""

    number: int
    line: int  # of its opening fence, 1-based
    text: str


@dataclass
class Run:
    """What running the README's blocks left behind."""

    blocks: list[Block]
    status: int
    output: str
    workdir: Path
    gateway_log: Path
    url: str

    def output_of(self, block: Block) -> str:
        start = f"{MARKER} {block.number} start\n"
        if start not in self.output:
            return ""
        after = self.output.split(start, 1)[1]
        return after.split(f"\n{MARKER} {block.number} end", 1)[0]

    def has_finished(self, block: Block) -> bool:
        return f"{MARKER} {block.number} end\n" in self.output

    def block_containing(self, text: str) -> Block:
        found = [block for block in self.blocks if text in block.text]
        assert len(found) == 1, f"expected one ```sh block of README.md containing {text!r}"
        return found[0]

    def report(self, block: Block) -> str:
        return (
            f"README.md block {block.number} (line {block.line}):\n{block.text}\n"
            f"--- its output ---\n{self.output_of(block)}\n"
            f"--- gateway log (tail) ---\n{_tail(self.gateway_log)}"
        )


def sh_blocks(readme: str) -> list[Block]:
    """Every ```sh block, in order."""
    blocks: list[Block] = []
    lines: list[str] | None = None
    start = 0
    for number, line in enumerate(readme.splitlines(), start=1):
        if lines is None:
            if line.strip() == "```sh":
                lines, start = [], number
        elif line.strip() == "```":
            blocks.append(Block(len(blocks) + 1, start, "\n".join(lines)))
            lines = None
        else:
            lines.append(line)
    assert lines is None, f"README.md: the ```sh block at line {start} is not closed"
    return blocks


def script(blocks: list[Block], url: str) -> str:
    """One bash script: the blocks in order, set-up commands skipped, URL pointed at `url`."""
    parts = ["set -euo pipefail"]
    skipped: list[str] = []
    for block in blocks:
        lines = []
        for line in block.text.splitlines():
            command = line.split("#", 1)[0].strip()
            if command in SETUP_COMMANDS:
                skipped.append(command)
                lines.append(f"# skipped by tests/test_readme.py: {command}")
            else:
                lines.append(line)
        parts += [
            f"printf '\\n{MARKER} {block.number} start\\n'",
            "\n".join(lines),
            f"printf '\\n{MARKER} {block.number} end\\n'",
        ]
    assert sorted(skipped) == sorted(SETUP_COMMANDS), (
        f"README.md: expected the set-up commands {SETUP_COMMANDS} once each, found {skipped}"
    )
    text = "\n".join(parts) + "\n"
    assert len(URL_LINE.findall(text)) == 1, (
        "README.md: URL must be set once, on the line `export URL=http://127.0.0.1:8000`"
    )
    text = URL_LINE.sub(f"export URL={url}", text)
    # Anything still aimed at the default address could reach a developer's own `make run`.
    commands = [line.split("#", 1)[0] for line in text.splitlines()]
    assert not [c for c in commands if ":8000" in c], "README.md: a block uses :8000, not $URL"
    return text


def fresh_environment() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if name in KEPT_VARIABLES or name.startswith(KEPT_PREFIXES)
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_until_serving(gateway: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if gateway.poll() is not None:
            pytest.fail(f"tooltool-gateway exited with {gateway.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/__lbheartbeat__", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:  # not listening yet (URLError is an OSError)
            pass
        time.sleep(0.1)
    pytest.fail(f"tooltool-gateway did not answer at {url} within 20 s:\n{_tail(log)}")


def _stop(gateway: subprocess.Popen[bytes]) -> None:
    gateway.terminate()
    try:
        gateway.wait(timeout=10)
    except subprocess.TimeoutExpired:
        gateway.kill()
        gateway.wait(timeout=10)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """A newcomer's directory with `make run` serving; the README's blocks pasted into bash."""
    workdir = tmp_path_factory.mktemp("newcomer")
    venv = Path(sys.prefix)
    gateway_bin = venv / "bin" / "tooltool-gateway"
    assert gateway_bin.exists(), f"{gateway_bin}: the project is not installed in this venv"
    (workdir / ".venv").symlink_to(venv, target_is_directory=True)
    environ = fresh_environment()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    blocks = sh_blocks(README.read_text())
    # Beside the newcomer's directory, not in it; bash reads it from a file, so a command
    # that reads stdin cannot swallow the blocks after it.
    pasted = workdir.parent / f"{workdir.name}-readme.sh"
    pasted.write_text(script(blocks, url))
    log = workdir.parent / f"{workdir.name}-gateway.log"
    with log.open("wb") as log_file:
        gateway = subprocess.Popen(
            [workdir / ".venv/bin/tooltool-gateway", "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_serving(gateway, url, log)
        completed = subprocess.run(
            ["bash", "--noprofile", "--norc", pasted],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
            check=False,
        )
        yield Run(blocks, completed.returncode, completed.stdout, workdir, log, url)
    finally:
        _stop(gateway)


def test_every_block_runs_to_its_end(run: Run) -> None:
    for block in run.blocks:
        assert run.has_finished(block), (
            f"stopped with exit status {run.status} in {run.report(block)}"
        )
    assert run.status == 0, run.output


def test_the_store_is_the_temporary_directorys(run: Run) -> None:
    data = run.workdir / "tooltool-data"
    assert (data / ".clients.json").is_file()
    for name in ("clang.tar.xz", "tool.tar.xz", "public.txt", "internal.txt"):
        digest = hashlib.sha512((run.workdir / name).read_bytes()).hexdigest()
        assert (data / "index" / "sha512" / f"{digest}.json").is_file(), name


def test_imports_print_digest_size_and_name(run: Run) -> None:
    clang = run.block_containing("> clang.tar.xz")  # the block making it
    runbook = run.block_containing("sha512/invalid")
    digest = hashlib.sha512((run.workdir / "clang.tar.xz").read_bytes()).hexdigest()
    assert f"{digest} 100000 clang.tar.xz" in run.output_of(clang), run.report(clang)
    names = [m["name"] for m in DIGEST_LINE.finditer(run.output_of(runbook))]
    assert names == ["public.txt", "internal.txt"], run.report(runbook)


def test_the_upload_by_curl_downloads_back_identical(run: Run) -> None:
    block = run.block_containing("/upload/complete/sha512/")
    output = run.output_of(block)
    uploaded = (run.workdir / "tool.tar.xz").read_bytes()
    assert len(uploaded) == 100000
    assert '"status":"accepted"' in output, run.report(block)
    assert "check.tar.xz: the uploaded bytes" in output, run.report(block)
    assert (run.workdir / "check.tar.xz").read_bytes() == uploaded
    assert (run.workdir / "tool-again.tar.xz").read_bytes() == uploaded  # fetched with a token


def test_the_runbook_checks_answer_302_403_400(run: Run) -> None:
    block = run.block_containing("sha512/invalid")
    output = run.output_of(block)
    port = re.escape(urlsplit(run.url).netloc)
    assert re.search(
        rf"^PASS public: 302 to http://{port}, which served its 14 bytes\n"
        r"PASS internal: 403 with the runbook's body\n"
        r"PASS invalid: 400 with the runbook's body\n"
        rf"PASS internal with credentials: 302 to http://{port}, which served its 17 bytes\n",
        output,
        re.MULTILINE,
    ), run.report(block)
    assert re.search(r"^HTTP/1\.1 302 Found\r?$", output, re.MULTILINE), run.report(block)
    assert "a public file\n" in output, run.report(block)  # `curl -L` follows to the bytes
    assert '"status":403' in output, run.report(block)
    assert "You don't have the permission to access the requested resource" in output
    assert '"detail":"Invalid sha512 digest"' in output, run.report(block)
    assert '"status":400' in output, run.report(block)


def test_the_batch_resolve_block_answers_each_entry_as_get(run: Run) -> None:
    block = run.block_containing("$URL/resolve")
    output = run.output_of(block)
    clang = hashlib.sha512((run.workdir / "clang.tar.xz").read_bytes()).hexdigest()
    tool = hashlib.sha512((run.workdir / "tool.tar.xz").read_bytes()).hexdigest()
    assert output.splitlines() == [
        f"{clang[:12]} url", f"{tool[:12]} url", "not-a-digest 400",
        f"{clang[:12]} url", f"{tool[:12]} 403", "not-a-digest 400",
    ], run.report(block)  # fmt: skip


def test_the_heartbeat_and_a_request_id_answer(run: Run) -> None:
    block = run.block_containing("__heartbeat__")
    output = run.output_of(block)
    assert '{"status":"ok","checks":{"store:local":"ok"}' in output, run.report(block)
    assert re.search(r"^x-request-id: [0-9a-f]{32}\r?$", output, re.MULTILINE), run.report(block)


def test_tokens_carry_the_scopes_asked_for(run: Run) -> None:
    block = run.block_containing('"expires_in": 300')
    output = run.output_of(block)
    assert output.count('"token":') == 2, run.report(block)
    narrower = output[output.rindex('{"token":') :]
    assert '"scopes":["project:releng:services/tooltool/api/download/internal"]' in narrower
    permissions = run.block_containing("__permissions__")
    assert '"clientId":"tooltool-dev"' in run.output_of(permissions), run.report(permissions)


def test_the_indexer_commands_run(run: Run) -> None:
    block = run.block_containing("tooltool-indexer failures")
    output = run.output_of(block)
    assert '"failed": 0' in output, run.report(block)
    for text in ("tooltool-indexer run --no-check", "tooltool-indexer rebuild"):
        block = run.block_containing(text)
        summary = json.loads(run.output_of(block).splitlines()[-1])
        assert summary["failures"] == 0, run.report(block)
    assert summary["written"] == 0, run.report(block)  # the index was as the sources say


def test_the_metrics_blocks_show_requests_and_passes(run: Run) -> None:
    block = run.block_containing("/__metrics__")
    assert 'route="/sha512/{digest}",status="302"} ' in run.output_of(block), run.report(block)
    block = run.block_containing("--metrics-file")
    passes = 'tooltool_indexer_passes_total{kind="check",outcome="complete"} 1.0'
    assert passes in run.output_of(block), run.report(block)
