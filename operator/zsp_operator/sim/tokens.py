"""ServiceAccount tokens: JWTs (HS256 with a per-server secret) shaped like the real ones."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

ISSUER = "https://kubernetes.default.svc.cluster.local"
API_AUDIENCE = ISSUER

DEFAULT_EXPIRATION_SECONDS = 3600
MIN_EXPIRATION_SECONDS = 600
MAX_EXPIRATION_SECONDS = 1 << 32
# kube-apiserver --service-account-extend-token-expiration: a request for exactly this
# many seconds (what kubelets ask for) gets a token valid for a year, while the
# TokenRequest status still reports the requested hour and seven seconds.
LEGACY_EXTENDED_REQUEST_SECONDS = 3607
EXTENDED_EXPIRATION_SECONDS = 365 * 24 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class BoundObject:
    kind: str  # Pod or Secret
    name: str
    uid: str


class TokenSigner:
    """Mints and verifies tokens with a secret that lives as long as the server."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)
        self._key_id = uuid.uuid4().hex

    def _sign(self, signing_input: bytes) -> str:
        return _b64(hmac.new(self._secret, signing_input, hashlib.sha256).digest())

    def mint(
        self,
        *,
        namespace: str,
        sa_name: str,
        sa_uid: str,
        audiences: list[str],
        issued_at: int,
        lifetime_seconds: int,
        bound: BoundObject | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """A signed token and its claims; `jti` is the credential id."""
        kube: dict[str, Any] = {
            "namespace": namespace,
            "serviceaccount": {"name": sa_name, "uid": sa_uid},
        }
        if bound is not None:
            kube[bound.kind.lower()] = {"name": bound.name, "uid": bound.uid}
        claims: dict[str, Any] = {
            "aud": audiences,
            "exp": issued_at + lifetime_seconds,
            "iat": issued_at,
            "iss": ISSUER,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": kube,
            "nbf": issued_at,
            "sub": f"system:serviceaccount:{namespace}:{sa_name}",
        }
        header = {"alg": "HS256", "kid": self._key_id, "typ": "JWT"}
        signing_input = (
            _b64(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64(json.dumps(claims, separators=(",", ":")).encode())
        )
        return f"{signing_input}.{self._sign(signing_input.encode())}", claims

    def verify(self, token: str, now: float) -> dict[str, Any] | None:
        """The claims of a token this server signed that is valid at `now`, else None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        signing_input = f"{parts[0]}.{parts[1]}".encode()
        if not hmac.compare_digest(self._sign(signing_input), parts[2]):
            return None
        try:
            claims: dict[str, Any] = json.loads(_unb64(parts[1]))
        except ValueError:
            return None
        if claims.get("iss") != ISSUER:
            return None
        if not (claims.get("nbf", 0) <= now < claims.get("exp", 0)):
            return None
        return claims


def decode_unverified(token: str) -> dict[str, Any]:
    """The claims of a JWT without checking it: for tests and tools that inspect tokens."""
    payload: dict[str, Any] = json.loads(_unb64(token.split(".")[1]))
    return payload
