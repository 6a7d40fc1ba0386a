"""The management token check, in one place.

Two apps apply it: the request worker's gateway, before it reads (and buffers)
a management request's body, so an unauthenticated client cannot make a worker
hold anything; and the control worker's management app, which is the authority
for calls that reach it by any other way (in-process tests, a future caller).
Both must agree on which paths are public, hence one predicate.
"""

from __future__ import annotations

import hmac

from hoodyexec.errors import Unauthorized

MANAGEMENT_PREFIX = "/api/v1/exec"
HEALTH_PATH = MANAGEMENT_PREFIX + "/health"


class TokenCheck:
    """With a token configured, every management call but health needs it.

    The OpenAPI documents (``/openapi.json|yaml``) and health are public.
    """

    __slots__ = ("token",)

    def __init__(self, token: str | None) -> None:
        self.token = token.encode() if token else None

    def check(self, path: str, authorization: str | None) -> None:
        """Raise ``Unauthorized`` unless ``path`` is public or carries the token."""
        token = self.token
        if token is None or path == HEALTH_PATH or not path.startswith(MANAGEMENT_PREFIX):
            return
        scheme, _, credential = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            credential.strip().encode(), token
        ):
            raise Unauthorized(
                "missing or invalid management token (Authorization: Bearer <token>)"
            )
