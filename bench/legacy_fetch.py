"""The legacy client's fetch, step for step, as the baseline of bench/fetch.py.

What ``tooltool.py fetch -c CACHE`` does for a manifest with an empty cache, one
file after another: ``GET <base>sha512/<digest>`` through urllib (redirect
followed), the body read 4 KiB at a time into a temporary file in the current
folder, then the file read again (10 KiB at a time) to check its size and sha512,
renamed into place, copied into the cache and its time set. A warm cache: the
entry copied out, then read again to check it.

    python bench/legacy_fetch.py --url URL -m manifest.tt -c CACHE
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path


def _valid(path: str, size: int, digest: str) -> bool:
    if os.path.getsize(path) != size:
        return False
    hasher = hashlib.sha512()
    with open(path, "rb") as stream:
        while chunk := stream.read(10 * 1024):
            hasher.update(chunk)
    return hasher.hexdigest() == digest


def _download(url: str, temporary: str) -> None:
    with urllib.request.urlopen(url, timeout=60) as response, open(temporary, "wb") as out:
        while chunk := response.read(4096):
            out.write(chunk)


def fetch(base: str, records: list[dict], cache: str) -> bool:
    ok = True
    for record in records:
        name, size, digest = record["filename"], record["size"], record["digest"]
        cached = os.path.join(cache, digest)
        if os.path.exists(name) and _valid(name, size, digest):
            continue
        if os.path.exists(cached):
            shutil.copy(cached, name)
            os.utime(cached)
            if _valid(name, size, digest):
                continue
        fd, temporary = tempfile.mkstemp(dir=os.getcwd())
        os.close(fd)
        _download(f"{base}sha512/{digest}", temporary)
        if not _valid(temporary, size, digest):
            os.remove(temporary)
            ok = False
            continue
        os.rename(temporary, name)
        os.makedirs(cache, 0o700, exist_ok=True)
        shutil.copy(name, cached)
        os.utime(cached)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("-m", "--manifest", default="manifest.tt")
    parser.add_argument("-c", "--cache-folder", required=True)
    options = parser.parse_args()
    base = options.url if options.url.endswith("/") else options.url + "/"
    records = json.loads(Path(options.manifest).read_text())
    return 0 if fetch(base, records, options.cache_folder) else 1


if __name__ == "__main__":
    sys.exit(main())
