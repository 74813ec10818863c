"""CloudFront signed URLs (canned policy) of the blobs, for a distribution in front of the bucket.

How to wire it into the download route: when ``settings.cloudfront`` is set,
``create_app`` passes ``CloudFrontSigner.from_settings(settings.cloudfront).url`` as
the ``cdn`` signer of :class:`gateway.download_urls.DownloadUrls`. Its URLs then
replace the store's presigned ones, under the same expiry rules (``signed_at +
DOWNLOAD_EXPIRES_IN``, an absolute time) and the same reuse window, which also spares
most of the RSA signatures (about 300 µs each). The URL names no region: the
distribution serves the bucket behind it whichever region was chosen. The local store
has no CloudFront in front of it.

Format: https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/private-content-creating-signed-url-canned-policy.html
— ``<CLOUDFRONT_URL>/<key>?Expires=<epoch>&Signature=<RSA-SHA1, CloudFront's base64>
&Key-Pair-Id=<id>``, made by botocore's own :class:`botocore.signers.CloudFrontSigner`.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

import botocore.signers
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from indexer.sigv4 import quote_key

if TYPE_CHECKING:
    from gateway.settings import CloudFrontSettings


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    """The RSA private key in `pem` (no passphrase); ValueError naming what is wrong, never
    quoting the key."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("not the PEM text of an RSA private key without a passphrase") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("a private key, but not an RSA private key")
    return key


class CloudFrontSigner:
    """Signs URLs of one CloudFront distribution with one key pair (see the module's doc)."""

    def __init__(self, base_url: str, key_id: str, private_key: rsa.RSAPrivateKey) -> None:
        self.base_url = base_url.rstrip("/")
        self.key_id = key_id
        self._key = private_key
        self._signer = botocore.signers.CloudFrontSigner(key_id, self._sign)

    def __repr__(self) -> str:
        return f"CloudFrontSigner({self.base_url!r}, key_id={self.key_id!r})"

    @classmethod
    def from_settings(cls, settings: CloudFrontSettings) -> CloudFrontSigner:
        return cls(settings.url, settings.key_id, load_private_key(settings.private_key))

    def url(self, key: str, expires: int) -> str:
        """The URL of object `key` (percent-encoded as an S3 path, since CloudFront passes
        the path on to the bucket) until `expires`, in seconds since the epoch."""
        return str(
            self._signer.generate_presigned_url(
                f"{self.base_url}/{quote_key(key)}",
                date_less_than=datetime.datetime.fromtimestamp(expires, datetime.UTC),
            )
        )

    def _sign(self, message: bytes) -> bytes:
        # CloudFront's canned-policy signatures are RSA PKCS #1 v1.5 over SHA-1.
        return self._key.sign(message, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303
