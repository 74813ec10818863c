"""Signed download URLs: the S3 store's own signer against botocore's, side by side in one run.

Prints microseconds per URL for a blob key (``sha512/<128 hex>``): botocore's
``generate_presigned_url``, ``S3Store.presign_get`` (indexer.sigv4) and its bare
``QuerySigner``, on a SeaweedFS-style endpoint and on AWS addressing (no server is
contacted: signing is local), and CloudFront URLs (an RSA signature each).
Rounds (about 0.2 s of calls each) alternate so all see the same machine load; the best
round of each counts.

    .venv/bin/python bench/bench_presign.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.cloudfront import CloudFrontSigner
from indexer.s3_store import S3Store, make_client

KEY = "sha512/" + "0f" * 64


def candidates(endpoint: str | None) -> dict[str, Callable[[], object]]:
    client = make_client(
        "eu-west-1", endpoint_url=endpoint, access_key_id="AKIDBENCH", secret_access_key="s" * 40
    )
    store = S3Store(client, "bucket-a", region="eu-west-1")
    store.presign_get(KEY, expires_in=60)  # the first URL is botocore's, checked against ours
    signer = store._presigner.signer
    assert signer is not None
    assert store._presigner._verdicts == {("GET",): True}  # ours from the second URL on
    credentials = store._presigner.credentials()
    params = {"Bucket": "bucket-a", "Key": KEY}
    return {
        "botocore generate_presigned_url": lambda: client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=60
        ),
        "S3Store.presign_get": lambda: store.presign_get(KEY, expires_in=60),
        "QuerySigner.url": lambda: signer.url(
            "GET", KEY, credentials=credentials, expires_in=60, now=time.time()
        ),
    }


def cloudfront() -> dict[str, Callable[[], object]]:
    signer = CloudFrontSigner(
        "https://d111111abcdef8.cloudfront.net",
        "K2JCJMDEHXQW5F",
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )
    return {"CloudFrontSigner.url": lambda: signer.url(KEY, 2_000_000_000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    groups = {
        "endpoint http://127.0.0.1:8333 (path-style)": candidates("http://127.0.0.1:8333"),
        "AWS eu-west-1 (virtual-hosted)": candidates(None),
        "CloudFront (RSA-2048)": cloudfront(),
    }
    for title, calls in groups.items():
        timers = {name: timeit.Timer(call) for name, call in calls.items()}
        numbers = {name: timer.autorange()[0] for name, timer in timers.items()}  # ~0.2 s each
        best = {name: float("inf") for name in calls}
        for _ in range(args.rounds):
            for name, timer in timers.items():
                best[name] = min(best[name], timer.timeit(numbers[name]) / numbers[name])
        base = next(iter(best.values()))
        print(f"\n{title}")
        for name, seconds in best.items():
            print(f"  {name:45} {seconds * 1e6:8.2f} µs   {base / seconds:6.1f}x")


if __name__ == "__main__":
    main()
