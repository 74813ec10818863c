"""CloudFront signed URLs: their settings, and URLs checked against CloudFront's documented format.

The signature is verified with the public key over the canned policy written here from
https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/private-content-creating-signed-url-canned-policy.html,
not from botocore, which makes the URLs.
"""

from __future__ import annotations

import base64
import functools
import re
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from gateway.cloudfront import CloudFrontSigner, load_private_key
from gateway.download_urls import DownloadUrls
from gateway.settings import CloudFrontSettings, Settings
from indexer.config import SettingsError
from tests.conftest import make_local_store
from tests.gateway.conftest import Gateway, random_bytes

BASE = "https://d111111abcdef8.cloudfront.net"
KEY_ID = "K2JCJMDEHXQW5F"
DIGEST = "0f" * 64
S3 = {"S3_REGIONS": "us-east-1:bucket-a;us-west-2:bucket-b"}
_URL = re.compile(
    r"(?P<resource>[^?]+)\?Expires=(\d+)&Signature=([A-Za-z0-9~_-]+)&Key-Pair-Id=(\w+)"
)


@functools.cache
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: object = None, password: bytes | None = None) -> str:
    key = key or private_key()
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


def environ(**changes: str) -> dict[str, str]:
    return {
        "CLOUDFRONT_URL": BASE,
        "CLOUDFRONT_KEY_ID": KEY_ID,
        "CLOUDFRONT_PRIVATE_KEY": pem(),
        **changes,
    }


def signer() -> CloudFrontSigner:
    return CloudFrontSigner(BASE, KEY_ID, private_key())


def assert_signed(url: str, key: str, expires: int) -> None:
    """`url` is CloudFront's canned-policy URL of `key` until `expires`, signed by our key."""
    match = _URL.fullmatch(url)
    assert match is not None, url
    resource, signed_expires, signature, key_id = match.groups()
    assert resource == f"{BASE}/{quote(key, safe='/~')}"
    assert (int(signed_expires), key_id) == (expires, KEY_ID)
    condition = f'{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}'
    policy = f'{{"Statement":[{{"Resource":"{resource}","Condition":{condition}}}]}}'

    raw = base64.b64decode(signature.replace("-", "+").replace("_", "=").replace("~", "/"))
    public = private_key().public_key()
    public.verify(raw, policy.encode(), padding.PKCS1v15(), hashes.SHA1())  # noqa: S303


def test_a_blob_url() -> None:
    url = signer().url(f"sha512/{DIGEST}", 1767225600)
    assert url.startswith(f"{BASE}/sha512/{DIGEST}?Expires=1767225600&Signature=")
    assert url.endswith(f"&Key-Pair-Id={KEY_ID}")
    assert_signed(url, f"sha512/{DIGEST}", 1767225600)


@settings(max_examples=60, deadline=None, database=None)
@given(
    key=st.text(min_size=1, max_size=40) | st.sampled_from(["a b+c=d/é~", "x//y", "%2F?#&"]),
    expires=st.integers(0, 2**32),
)
def test_any_key_and_expiry_is_signed_as_cloudfront_expects(key: str, expires: int) -> None:
    assert_signed(signer().url(key, expires), key, expires)


def test_keys_are_percent_encoded_as_s3_paths() -> None:
    url = signer().url("dir/a b+c=d é~", 10)
    assert url.startswith(f"{BASE}/dir/a%20b%2Bc%3Dd%20%C3%A9~?Expires=10&")


def test_a_changed_url_no_longer_verifies() -> None:
    url = signer().url(f"sha512/{DIGEST}", 1767225600)
    tampered = url.replace("Expires=1767225600", "Expires=1767225601")
    with pytest.raises(InvalidSignature):
        assert_signed(tampered, f"sha512/{DIGEST}", 1767225601)


def test_as_the_download_route_would_use_it(tmp_path: Path) -> None:
    """As DownloadUrls' CDN signer: the URL expires DOWNLOAD_EXPIRES_IN after its signing."""
    urls = DownloadUrls(expires_in=60, reuse_seconds=5, cdn=signer().url, clock=lambda: 1000.5)
    redirect = urls.redirect(make_local_store(tmp_path), f"sha512/{DIGEST}", lambda: "")
    assert_signed(redirect.url, f"sha512/{DIGEST}", 1060)


class TestSettings:
    def test_none_by_default(self) -> None:
        assert Settings.from_environ({}).cloudfront is None

    def test_all_three(self) -> None:
        found = Settings.from_environ({**environ(CLOUDFRONT_URL=BASE + "/"), **S3}).cloudfront
        assert found == CloudFrontSettings(BASE, KEY_ID, pem().strip())
        assert CloudFrontSigner.from_settings(found).url("k", 1).startswith(f"{BASE}/k?")
        prefixed = CloudFrontSettings.from_environ(environ(CLOUDFRONT_URL=BASE + "/tooltool/"))
        assert prefixed is not None
        assert prefixed.url == f"{BASE}/tooltool"

    def test_the_key_is_never_shown(self) -> None:
        found = CloudFrontSettings.from_environ(environ())
        assert "PRIVATE KEY" not in repr(found)
        assert "PRIVATE KEY" not in repr(Settings.from_environ({**environ(), **S3}))
        assert repr(CloudFrontSigner.from_settings(found)) == (
            f"CloudFrontSigner('{BASE}', key_id='{KEY_ID}')"
        )

    def test_escaped_line_breaks(self) -> None:
        escaped = environ(CLOUDFRONT_PRIVATE_KEY=pem().replace("\n", "\\n"))
        found = CloudFrontSettings.from_environ(escaped)
        assert found is not None
        assert found.private_key == pem().strip()

    @pytest.mark.parametrize(
        ("missing", "message"),
        [
            (["CLOUDFRONT_KEY_ID"], "CLOUDFRONT_KEY_ID: required with CLOUDFRONT_URL and "),
            (["CLOUDFRONT_URL", "CLOUDFRONT_KEY_ID"], "CLOUDFRONT_URL: required with CLOUD"),
            (["CLOUDFRONT_PRIVATE_KEY"], "CLOUDFRONT_PRIVATE_KEY: required with CLOUDFRONT_URL"),
        ],
    )
    def test_a_partial_set_names_what_is_missing(self, missing: list[str], message: str) -> None:
        partial = {name: value for name, value in environ().items() if name not in missing}
        with pytest.raises(SettingsError, match=f"^{re.escape(message)}"):
            Settings.from_environ(partial)

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"CLOUDFRONT_URL": "http://d111111abcdef8.cloudfront.net"}, "CLOUDFRONT_URL: "),
            ({"CLOUDFRONT_URL": f"{BASE}/?x=1"}, "CLOUDFRONT_URL: "),
            ({"CLOUDFRONT_URL": "d111111abcdef8.cloudfront.net"}, "CLOUDFRONT_URL: "),
            ({"CLOUDFRONT_URL": f'{BASE}/a"b'}, "CLOUDFRONT_URL: "),
            ({"CLOUDFRONT_KEY_ID": "K2J&x=y"}, "CLOUDFRONT_KEY_ID: "),
        ],
    )
    def test_malformed_values_name_the_setting(self, changes: dict[str, str], message: str) -> None:
        with pytest.raises(SettingsError, match=f"^{message}"):
            Settings.from_environ(environ(**changes))

    @pytest.mark.parametrize(
        "text",
        [
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----",
            "secret-key-material",
            pem(ec.generate_private_key(ec.SECP256R1())),
            pem(password=b"passphrase"),
        ],
        ids=["garbage-pem", "not-pem", "ec-key", "encrypted"],
    )
    def test_an_unusable_key_is_refused_unquoted(self, text: str) -> None:
        with pytest.raises(SettingsError, match=r"^CLOUDFRONT_PRIVATE_KEY: ") as caught:
            Settings.from_environ(environ(CLOUDFRONT_PRIVATE_KEY=text))
        message = str(caught.value)
        assert "c2VjcmV0" not in message
        assert "secret-key-material" not in message
        assert "BEGIN" not in message
        with pytest.raises(ValueError, match="RSA private key"):
            load_private_key(text)


def test_downloads_redirect_to_signed_cloudfront_urls(
    make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    gateway = make_gateway(cloudfront=CloudFrontSettings.from_environ(environ()))
    digest = gateway.add(random_bytes(), "public")
    internal = gateway.add(random_bytes(), "internal")
    client = TestClient(gateway.app(), follow_redirects=False, raise_server_exceptions=False)
    before = int(time.time())
    first = client.get(f"/sha512/{digest}")
    second = client.get(f"/sha512/{digest}")  # the fast path, with the URL reused
    after = int(time.time())
    assert first.status_code == second.status_code == 302
    assert first.headers["location"] == second.headers["location"]
    assert first.content == second.content
    url = first.headers["location"]
    assert url.startswith(f"{BASE}/sha512/{digest}?Expires=")
    expires = int(url.split("Expires=")[1].split("&")[0])
    expires_in = gateway.settings.download_expires_in
    assert before + expires_in <= expires <= after + expires_in
    assert_signed(url, f"sha512/{digest}", expires)
    # The same checks as ever before any URL: internal files stay protected.
    assert client.get(f"/sha512/{internal}").status_code == 403
    assert client.get("/sha512/nope").status_code == 400


def test_cloudfront_needs_s3() -> None:
    with pytest.raises(SettingsError, match=r"^CLOUDFRONT_URL: .*set S3_REGIONS"):
        Settings.from_environ(environ())


def test_only_the_origin_regions_downloads_go_through_cloudfront(
    make_gateway: Callable[..., Gateway],
) -> None:
    gateway = make_gateway("east", "west", cloudfront=CloudFrontSettings.from_environ(environ()))
    digest = gateway.add(random_bytes())
    client = TestClient(gateway.app(), follow_redirects=False, raise_server_exceptions=False)
    for _ in range(2):
        assert client.get(f"/sha512/{digest}").headers["location"].startswith(f"{BASE}/sha512/")
        west = client.get(f"/sha512/{digest}?region=west").headers["location"]
        assert west.startswith("http://testserver:80/__store__/west/")
