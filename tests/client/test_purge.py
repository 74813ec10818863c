"""``tooltool purge``: the cache emptied (``-s 0``) or trimmed least recently used first,
only its own files, never a part file a running fetch is writing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tests.client.fetch_helpers import run_tooltool, slow_fetch
from tooltool_client import staging
from tooltool_client.purge import purge_folder


def entry(cache: Path, data: bytes, *, used: float = 0) -> Path:
    """A cache entry holding `data`, last used `used` seconds after the epoch's first day."""
    path = cache / hashlib.sha512(data).hexdigest()
    path.write_bytes(data)
    os.utime(path, (86400 + used, 86400 + used))
    return path


def test_size_zero_empties_the_cache_of_its_own_files_only(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    entries = [entry(cache, bytes([n]) * 100) for n in range(3)]
    part = cache / f".tooltool-{'0' * 128}.part"
    part.write_bytes(b"half")
    lock = cache / f".tooltool-{'1' * 128}.lock"  # left by a killed fetch
    lock.touch()
    (cache / "notes.txt").write_text("mine")
    (cache / ("f" * 128)).mkdir()
    outcome = run_tooltool(["-c", str(cache), "purge"])
    assert outcome.code == 0, outcome.stderr
    assert not any(path.exists() for path in (*entries, part, lock))
    assert sorted(path.name for path in cache.iterdir()) == sorted(["notes.txt", "f" * 128])


def test_least_recently_used_go_first_until_there_is_room(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    newest = entry(cache, b"n" * 1000, used=30)
    oldest = entry(cache, b"o" * 1000, used=10)
    middle = entry(cache, b"m" * 1000, used=20)
    disk = {"free": 500}

    def free(folder: Path) -> int:
        assert folder == cache
        return disk["free"] + 1000 * (3 - len(list(cache.iterdir())))

    assert purge_folder(cache, 2400, free=free) == (2, 2000)
    assert (oldest.exists(), middle.exists(), newest.exists()) == (False, False, True)
    assert purge_folder(cache, 2400, free=free) == (0, 0)  # already room enough


def test_enough_free_space_removes_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    kept = entry(cache, b"k")
    outcome = run_tooltool(["-c", str(cache), "-s", "0.000001", "purge"])
    assert outcome.code == 0, outcome.stderr
    assert kept.exists()
    assert "no need to clean up" in outcome.stderr


def test_without_a_cache_folder(tmp_path: Path) -> None:
    outcome = run_tooltool(["purge"])
    assert outcome.code == 1
    assert outcome.lines == ["ERROR - please specify the cache folder to be purged (-c)"]


def test_a_part_file_a_fetch_is_writing_is_kept(tmp_path: Path) -> None:
    cache, work = tmp_path / "cache", tmp_path / "work"
    cache.mkdir()
    work.mkdir()
    old = entry(cache, b"old")
    with slow_fetch(work, cache=cache) as slow:
        outcome = run_tooltool(["-c", str(cache), "purge"])
        assert outcome.code == 0, outcome.stderr
        assert slow.part.exists()
        assert not old.exists()
        slow.server.delay = 0
        _, err = slow.process.communicate(timeout=60)
    assert slow.process.returncode == 0, err
    assert (cache / slow.blob.digest).exists()
    assert hashlib.sha512((work / "big.bin").read_bytes()).hexdigest() == slow.blob.digest


def test_an_entry_a_fetch_is_placing_is_kept(tmp_path: Path) -> None:
    """A fetch holds the digest's claim from its download until the entry is linked into
    its folder: purge leaves the entry alone meanwhile."""
    cache = tmp_path / "cache"
    cache.mkdir()
    held, free = entry(cache, b"held"), entry(cache, b"free")
    with staging.claim(cache, held.name):
        assert purge_folder(cache, 0) == (1, len(b"free"))
    assert held.exists()
    assert not free.exists()
    assert sorted(path.name for path in cache.iterdir()) == [held.name]


def test_an_entry_whose_lock_cannot_be_made_is_left_in_one_line(tmp_path: Path) -> None:
    """A folder or a symlink where an entry's lock file goes (another user's, in a shared
    cache): the entry cannot be claimed, so it stays; the rest goes, without a traceback."""
    cache = tmp_path / "cache"
    cache.mkdir()
    blocked, dangling, other = (entry(cache, bytes([n]) * 100) for n in range(3))
    (cache / f".tooltool-{blocked.name}.lock").mkdir()
    (cache / f".tooltool-{dangling.name}.lock").symlink_to(tmp_path / "nowhere")
    outcome = run_tooltool(["-c", str(cache), "purge"])
    assert outcome.code == 0, outcome.stderr
    assert "Traceback" not in outcome.stderr
    assert blocked.exists()
    assert dangling.exists()
    assert not other.exists()
    assert not (tmp_path / "nowhere").exists()
