"""The error tree every Sieve component raises, drawn once here.

    IngestError
    ├── ConfigError           a setting is missing, malformed or out of range
    ├── CityConfigError       the city file (districts, sites, devices) is wrong
    ├── AuthenticationError   a device is unknown, revoked or gave a bad token
    ├── BackpressureError     the gateway holds as much work as it may
    ├── StoreError            the CQL store refused or did not answer in time
    │   └── StoreUnavailable  no replica could take the write; retry later
    ├── ShardUnavailable      a district shard could not be reached in time
    └── LocalStoreError       the local development store node failed to run

Each error renders its fields as ``key=value`` after the message so logs and
operators see the same facts.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BackpressureError",
    "CityConfigError",
    "ConfigError",
    "IngestError",
    "LocalStoreError",
    "ShardUnavailable",
    "StoreError",
    "StoreUnavailable",
]


class IngestError(Exception):
    """Root of every error Sieve raises on purpose."""

    def __init__(self, message: str, **fields: object) -> None:
        self.message = message
        self.fields = fields
        super().__init__(self._render())

    def _render(self) -> str:
        if not self.fields:
            return self.message
        pairs = " ".join(f"{key}={value!r}" for key, value in self.fields.items())
        return f"{self.message} ({pairs})"


class ConfigError(IngestError):
    """A setting is missing, malformed or out of range."""


class CityConfigError(IngestError):
    """The city file does not describe a usable city."""


class AuthenticationError(IngestError):
    """A device could not prove who it is."""


class BackpressureError(IngestError):
    """The gateway holds as much in-flight work as it is allowed to.

    Attributes:
        retry_after_ms: how long the caller should wait before resending.
    """

    def __init__(self, message: str, *, retry_after_ms: int, **fields: object):
        self.retry_after_ms = retry_after_ms
        super().__init__(message, retry_after_ms=retry_after_ms, **fields)


class StoreError(IngestError):
    """The CQL store refused a request or did not answer in time."""


class StoreUnavailable(StoreError):
    """No replica could take the request; the same request may succeed later."""


class ShardUnavailable(IngestError):
    """A district shard did not answer within the caller's deadline."""


class LocalStoreError(IngestError):
    """The local development store node could not be fetched, started or stopped."""
