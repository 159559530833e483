"""Device authentication: who a device is, its role, and where it may act.

A device presents its id and a bearer token. Devices listed in the city file
carry the SHA-256 of their token; the many generated devices (see
:mod:`engine.city`)
have tokens derived as HMAC-SHA256(device-token key, device id), so issuing a
token needs the key and nothing is stored per device. A revoked device is
refused whatever token it shows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from engine.city import City, Role
from engine.exceptions import AuthenticationError

__all__ = ["AuthenticatedDevice", "DeviceAuthenticator", "make_device_token"]


@dataclass(frozen=True, slots=True)
class AuthenticatedDevice:
    """A device whose token checked out, its role and where it serves.

    ``district`` is empty for lab devices, which serve every district.
    """

    id: str
    site: str
    district: str
    role: Role = Role.COLLECTOR
    lab: str = ""


def make_device_token(device_token_key: bytes, device_id: str) -> str:
    """Return the token a generated device must present."""
    digest = hmac.new(device_token_key, device_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


class DeviceAuthenticator:
    """Checks device credentials against the city file and the token key."""

    def __init__(self, city: City, device_token_key: bytes) -> None:
        self._city = city
        self._key = device_token_key

    def authenticate(self, device_id: str, token: str) -> AuthenticatedDevice:
        """Return the device if its token is right.

        Raises:
            AuthenticationError: the device is unknown, revoked, or its token
                is wrong. The message does not say which, to give a guesser
                nothing; the ``cause`` field is for server logs only.
        """
        entry = self._city.device(device_id)
        if entry is None:
            raise AuthenticationError("device not accepted", cause="unknown")
        if device_id in self._city.revoked:
            raise AuthenticationError("device not accepted", cause="revoked")

        if entry.token_sha256:
            presented = hashlib.sha256(token.encode()).hexdigest()
            ok = hmac.compare_digest(presented, entry.token_sha256)
        else:
            ok = hmac.compare_digest(token, make_device_token(self._key, device_id))
        if not ok:
            raise AuthenticationError("device not accepted", cause="bad_token")

        return AuthenticatedDevice(
            id=device_id,
            site=entry.site,
            district=entry.district,
            role=entry.role,
            lab=entry.lab,
        )
