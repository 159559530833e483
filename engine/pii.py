"""Protection of personal data at rest: keys, AES-GCM sealing and look-up hashes.

Only a person's name and document number are collected. Both are sealed with
AES-256-GCM before they reach the store, bound to their registration id as
associated data so a sealed value cannot be moved to another row. Look-ups by
document number go through an HMAC-SHA256 of the normalised number under a
separate key, so the store can be searched without holding the number.

Keys live in a TOML file (``var/keys.toml`` in development, generated on first
run with mode 0600; in production a mounted secret). Sealed values carry the
id of the key that sealed them, so keys can be rotated: new writes use
``current``, older values stay readable while their key is still listed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine.exceptions import ConfigError

__all__ = ["Keyring", "PiiCipher", "mask_document", "mask_name"]

_FORMAT_VERSION = 1
_NONCE_BYTES = 12
LOOKUP_HASH_BYTES = 16
"""Bytes of the keyed look-up hash kept per document (128 bits)."""


@dataclass(frozen=True, slots=True)
class Keyring:
    """The secrets one deployment holds.

    Attributes:
        current: id (1-255) of the sealing key used for new writes.
        sealing: every sealing key still readable, by id.
        lookup: HMAC key for document look-up hashes; it cannot rotate without
            re-hashing stored rows.
        device_token: HMAC key from which generated devices' tokens derive.
    """

    current: int
    sealing: dict[int, bytes]
    lookup: bytes
    device_token: bytes

    @classmethod
    def load(cls, path: Path, *, create: bool = False) -> Keyring:
        """Read a keys file, generating a fresh one first if asked and absent.

        Args:
            path: the TOML keys file.
            create: write new random keys when the file does not exist (dev).

        Raises:
            ConfigError: the file is missing (and create is false), malformed,
                or holds a key of the wrong length.
        """
        if not path.exists():
            if not create:
                raise ConfigError("keys file not found", path=str(path))
            cls._write_new(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
            current = int(raw["current"])
            sealing = {
                int(key_id): _decode_key(value, f"sealing.{key_id}")
                for key_id, value in raw["sealing"].items()
            }
            lookup = _decode_key(raw["lookup"], "lookup")
            device_token = _decode_key(raw["device_token"], "device_token")
        except (KeyError, ValueError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(
                "keys file is malformed", path=str(path), error=str(exc)
            ) from exc
        if current not in sealing or not 1 <= current <= 255:
            raise ConfigError("current sealing key is not listed", current=current)
        return cls(
            current=current, sealing=sealing, lookup=lookup, device_token=device_token
        )

    @staticmethod
    def _write_new(path: Path) -> None:
        def new_key() -> str:
            return base64.b64encode(secrets.token_bytes(32)).decode()

        text = (
            "# Development keys, generated on first run. Never commit this file.\n"
            "current = 1\n"
            f'lookup = "{new_key()}"\n'
            f'device_token = "{new_key()}"\n'
            "[sealing]\n"
            f'1 = "{new_key()}"\n'
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)


def _decode_key(value: str, name: str) -> bytes:
    key = base64.b64decode(value, validate=True)
    if len(key) != 32:
        raise ValueError(f"key {name} must be 32 bytes, got {len(key)}")
    return key


class PiiCipher:
    """Seals and opens personal fields and computes look-up hashes.

    Sealed layout: version byte, key id byte, 12-byte random nonce, then the
    AES-GCM ciphertext with its 16-byte tag.
    """

    def __init__(self, keyring: Keyring) -> None:
        self._current = keyring.current
        self._aead = {key_id: AESGCM(key) for key_id, key in keyring.sealing.items()}
        self._lookup_key = keyring.lookup

    def seal(self, plaintext: str, associated: bytes) -> bytes:
        """Encrypt a field, binding it to ``associated`` (the registration id)."""
        return self.seal_bytes(plaintext.encode(), associated)

    def seal_bytes(self, data: bytes, associated: bytes) -> bytes:
        """Encrypt binary personal data (a card photo) the same way."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        body = self._aead[self._current].encrypt(nonce, data, associated)
        return bytes((_FORMAT_VERSION, self._current)) + nonce + body

    def open(self, sealed: bytes, associated: bytes) -> str:
        """Decrypt a text field sealed by :meth:`seal`."""
        return self.open_bytes(sealed, associated).decode()

    def open_bytes(self, sealed: bytes, associated: bytes) -> bytes:
        """Decrypt a value sealed by :meth:`seal_bytes` under any listed key.

        Raises:
            ConfigError: the key that sealed it is no longer listed.
            cryptography.exceptions.InvalidTag: the value was tampered with or
                belongs to another row.
        """
        version, key_id = sealed[0], sealed[1]
        if version != _FORMAT_VERSION:
            raise ConfigError("unknown sealed-value format", version=version)
        aead = self._aead.get(key_id)
        if aead is None:
            raise ConfigError("sealing key is not in the keyring", key_id=key_id)
        nonce = sealed[2 : 2 + _NONCE_BYTES]
        return aead.decrypt(nonce, sealed[2 + _NONCE_BYTES :], associated)

    def lookup_hash(self, doc_type: int, number: str) -> bytes:
        """Keyed hash of a normalised document number, for look-ups."""
        message = f"{doc_type}:{number}".encode()
        return hmac.new(self._lookup_key, message, hashlib.sha256).digest()[
            :LOOKUP_HASH_BYTES
        ]


def mask_document(number: str) -> str:
    """Show the first 6 and last 4 characters only, as logs and dashboards may."""
    if len(number) <= 10:
        return "*" * len(number)
    return number[:6] + "*" * (len(number) - 10) + number[-4:]


def mask_name(name: str) -> str:
    """Show the first character of a name only."""
    return name[:1] + "*" * (len(name) - 1) if name else ""
