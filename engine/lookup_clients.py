"""Which systems may call the Residents service, and how they prove it.

Clients are the resident-facing app and grid workers' systems, each with an
id listed in ``Settings.lookup_clients``. Like generated devices (see
:mod:`engine.auth`), a client's token is derived with HMAC-SHA256 under the
deployment's token key, so issuing one needs the key and nothing is stored
per client; the message is prefixed ``client:`` so a device token never works
as a client token, or the other way round.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

from engine.exceptions import AuthenticationError

__all__ = ["CLIENT_HEADER", "LookupClientAuthenticator", "make_client_token"]

CLIENT_HEADER = "x-sieve-client"
"""gRPC metadata naming the calling client."""


def make_client_token(token_key: bytes, client_id: str) -> str:
    """Return the bearer token a look-up client must present."""
    message = f"client:{client_id}".encode()
    digest = hmac.new(token_key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


class LookupClientAuthenticator:
    """Checks a client id and token against the allowed list and the key.

    Args:
        token_key: the deployment's token key (``Keyring.device_token``).
        clients: ids of the clients allowed to call.
    """

    def __init__(self, token_key: bytes, clients: Iterable[str]) -> None:
        self._key = token_key
        self._clients = frozenset(clients)

    def authenticate(self, client_id: str, token: str) -> str:
        """Return the client id if its token is right.

        Raises:
            AuthenticationError: the client is not listed or its token is
                wrong; the message does not say which (``cause`` is for logs).
        """
        if client_id not in self._clients:
            raise AuthenticationError("client not accepted", cause="unknown")
        expected = make_client_token(self._key, client_id)
        if not hmac.compare_digest(token.encode(), expected.encode()):
            raise AuthenticationError("client not accepted", cause="bad_token")
        return client_id
