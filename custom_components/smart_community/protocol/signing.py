"""Signing OpenADR objects with JWS (RFC 7515), EdDSA over Ed25519.

An object stays an ordinary OpenADR object that any client can read: the signature is one
extra property, ``X_signature`` (the specification's model-extension rule lets clients
ignore it). Its value is a compact JWS with a detached, unencoded payload (RFC 7515
appendix F, RFC 7797); the payload is the object without that property in the JSON
Canonicalization Scheme (RFC 8785), so the signature survives any relay that re-encodes JSON.
The protected header carries the claims that bind the object to its issuer, audience, time
window, version and operation.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
import hashlib
import json
import time
from typing import Any, Self

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
import jwt
import rfc8785

from .models import Operation

SIGNATURE_FIELD = "X_signature"
ALGORITHM = "EdDSA"
SIGNATURE_TYPE = "openadr+jws"
# Protected-header parameter of a community-signed object: the grid's delegation (delegation.py).
DELEGATION_HEADER = "dlg"


class KeyFormatError(ValueError):
    """A key or key set is not a usable Ed25519 JWK."""


def canonical_payload(obj: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: the object without its signature, in RFC 8785 form."""
    return rfc8785.dumps({k: v for k, v in obj.items() if k != SIGNATURE_FIELD})


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515, section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of b64url; raises ValueError on anything that is not base64url."""
    if not isinstance(text, str) or any(c in text for c in "+/= \n"):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A trusted Ed25519 public key, bound to the issuer that may sign with it."""

    kid: str
    issuer: str
    key: Ed25519PublicKey

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any], issuer: str | None = None) -> Self:
        """Load an OKP/Ed25519 JWK; ``kid`` must be the key's RFC 7638 thumbprint."""
        if (
            jwk.get("kty") != "OKP"
            or jwk.get("crv") != "Ed25519"
            or not isinstance(jwk.get("x"), str)
        ):
            raise KeyFormatError("key is not an Ed25519 JWK (kty OKP, crv Ed25519, x)")
        try:
            raw = b64url_decode(jwk["x"])
            key = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as err:
            raise KeyFormatError(f"JWK 'x' is not an Ed25519 public key: {err}") from err
        kid = thumbprint(key)
        if jwk.get("kid", kid) != kid:
            raise KeyFormatError(f"JWK 'kid' {jwk.get('kid')!r} is not its thumbprint {kid!r}")
        owner = issuer or jwk.get("iss")
        if not isinstance(owner, str) or not owner:
            raise KeyFormatError("JWK names no issuer ('iss')")
        return cls(kid=kid, issuer=owner, key=key)

    def to_jwk(self) -> dict[str, str]:
        """The key as a public JWK, with its issuer."""
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64url(
                self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            ),
            "kid": self.kid,
            "use": "sig",
            "alg": ALGORITHM,
            "iss": self.issuer,
        }


def thumbprint(key: Ed25519PublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256) of an Ed25519 key: its stable key id and fingerprint."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    members = {"crv": "Ed25519", "kty": "OKP", "x": b64url(raw)}
    return b64url(hashlib.sha256(rfc8785.dumps(members)).digest())


def jwks(keys: Iterable[PublicKey]) -> dict[str, list[dict[str, str]]]:
    """A JWK Set (RFC 7517) of public keys."""
    return {"keys": [key.to_jwk() for key in keys]}


def keys_from_jwks(document: Mapping[str, Any], issuer: str | None = None) -> list[PublicKey]:
    """Every key of a JWK Set; raises KeyFormatError naming the first unusable one."""
    entries = document.get("keys")
    if not isinstance(entries, list) or not entries:
        raise KeyFormatError("JWK Set has no 'keys'")
    return [PublicKey.from_jwk(entry, issuer) for entry in entries]


@dataclass(frozen=True, slots=True)
class Claims:
    """What a signature asserts besides the object's content.

    ``aud`` are targets (see ``targets``); ``seq`` rises with every signature the issuer makes,
    so a later version of an object always has a higher one; ``op`` is the operation the
    signature authorises (a DELETE must be signed as such).
    """

    iss: str
    aud: tuple[str, ...]
    iat: int
    nbf: int
    exp: int
    seq: int
    op: Operation

    def header_fields(self) -> dict[str, Any]:
        """The claims as JWS protected-header parameters."""
        return {
            "iss": self.iss,
            "aud": list(self.aud),
            "iat": self.iat,
            "nbf": self.nbf,
            "exp": self.exp,
            "seq": self.seq,
            "op": str(self.op),
        }


@dataclass(slots=True)
class Signer:
    """An issuer's private key, and its sequence counter.

    A community's signer also holds the grid's current delegation to it (a JWT), which goes
    into every signature it makes, so receivers can check its authority.
    """

    issuer: str
    private_key: Ed25519PrivateKey
    delegation: str | None = field(default=None, repr=False)
    _last_seq: int = field(default=0, repr=False)

    @classmethod
    def generate(cls, issuer: str) -> Self:
        """A signer with a new random key."""
        return cls(issuer=issuer, private_key=Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, issuer: str, pem: bytes) -> Self:
        """A signer with a PKCS#8 PEM private key."""
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFormatError("private key is not Ed25519")
        return cls(issuer=issuer, private_key=key)

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (store it with mode 0600)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def public_key(self) -> PublicKey:
        """The public half, for key sets and pinning."""
        public = self.private_key.public_key()
        return PublicKey(kid=thumbprint(public), issuer=self.issuer, key=public)

    def next_seq(self) -> int:
        """A sequence number above every earlier one, also across restarts of the issuer.

        Microseconds since the epoch, never less than the last value plus one, so the counter
        needs no storage as long as the issuer's clock does not go back.
        """
        self._last_seq = max(self._last_seq + 1, time.time_ns() // 1000)
        return self._last_seq

    def sign(
        self,
        obj: Mapping[str, Any],
        *,
        audience: Iterable[str],
        not_before: int,
        expires: int,
        operation: Operation = Operation.UPDATE,
        issued_at: int | None = None,
    ) -> dict[str, Any]:
        """Return a copy of the object carrying a signature over all of its content."""
        claims = Claims(
            iss=self.issuer,
            aud=tuple(audience),
            iat=int(time.time()) if issued_at is None else issued_at,
            nbf=not_before,
            exp=expires,
            seq=self.next_seq(),
            op=operation,
        )
        return self.sign_with_claims(obj, claims)

    def sign_with_claims(self, obj: Mapping[str, Any], claims: Claims) -> dict[str, Any]:
        """Sign with explicit claims (tests use this to build edge cases)."""
        headers = {"kid": self.public_key.kid, "typ": SIGNATURE_TYPE, **claims.header_fields()}
        if self.delegation is not None:
            headers[DELEGATION_HEADER] = self.delegation
        token = jwt.api_jws.encode(
            canonical_payload(obj),
            self.private_key,
            algorithm=ALGORITHM,
            headers=headers,
            is_payload_detached=True,
        )
        signed = {k: v for k, v in obj.items() if k != SIGNATURE_FIELD}
        signed[SIGNATURE_FIELD] = token
        return signed


def decode_header(token: str) -> dict[str, Any]:
    """The protected header of a compact JWS, unverified; raises ValueError if malformed."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3 or parts[1] != "":
        raise ValueError("signature is not a compact JWS with a detached payload")
    header = json.loads(b64url_decode(parts[0]))
    if not isinstance(header, dict):
        raise ValueError("JWS header is not a JSON object")
    return header
