"""What a credential looks like in text, so none is written where people and logs read. No I/O.

A JWT (a ServiceAccount token: base64url header starting `{"`, payload, signature) or a PEM
private key. The audit log refuses a record holding one; a request's reason holding one is
refused at admission (and by the API server's own schema check), so a pasted token never
reaches the record, the Events or a notification.
"""

from __future__ import annotations

import re
from typing import Final

CREDENTIAL_SHAPES: Final = re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*|-----BEGIN [A-Z ]*PRIVATE KEY-----")
# The same shapes in RE2, for the CRD's x-kubernetes-validations (CEL's `matches`).
CREDENTIAL_SHAPES_RE2: Final = r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.|-----BEGIN [A-Z ]*PRIVATE KEY-----"


def looks_like_credential(text: str) -> bool:
    return CREDENTIAL_SHAPES.search(text) is not None
