"""Console users, roles and password checks.

Users live in a TOML file (``SIEVE_CONSOLE_USERS_FILE``)::

    [users.chen]
    role = "command"            # command | operator | sre
    password = "scrypt$16384$8$1$<salt base64>$<hash base64>"

Passwords are stored only as salted scrypt hashes; make one with
``python -m console.auth`` (it prompts for the password). Roles nest:
``command`` sees the dashboards only, ``operator`` also the operator pages,
``sre`` everything.
"""

from __future__ import annotations

import base64
import enum
import getpass
import hashlib
import hmac
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.exceptions import ConfigError

__all__ = [
    "Page",
    "Role",
    "User",
    "UserDirectory",
    "can_open",
    "hash_password",
    "verify_password",
]

_N, _R, _P = 2**14, 8, 1
_SALT_BYTES = 16
_HASH_BYTES = 32


class Role(enum.StrEnum):
    """What a console user is allowed to see."""

    COMMAND = "command"
    OPERATOR = "operator"
    SRE = "sre"


class Page(enum.StrEnum):
    """Groups of console pages, each with the roles that may open it."""

    DASHBOARD = "dashboard"
    OPERATOR = "operator"


_ALLOWED: Mapping[Page, frozenset[Role]] = {
    Page.DASHBOARD: frozenset(Role),
    Page.OPERATOR: frozenset({Role.OPERATOR, Role.SRE}),
}


def can_open(role: Role, page: Page) -> bool:
    """Whether a user of ``role`` may open pages of group ``page``."""
    return role in _ALLOWED[page]


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A salted scrypt hash of ``password`` in the users-file format."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_HASH_BYTES
    )
    return "$".join(
        [
            "scrypt",
            str(_N),
            str(_R),
            str(_P),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        ]
    )


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a stored hash (constant-time compare)."""
    try:
        scheme, n, r, p, salt_b64, hash_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(hash_b64, validate=True)
        actual = hashlib.scrypt(
            password.encode(),
            salt=salt,
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True, slots=True)
class User:
    """A console user as the users file defines them."""

    name: str
    role: Role
    password_hash: str


@dataclass(frozen=True, slots=True)
class UserDirectory:
    """Every console user, by name."""

    users: Mapping[str, User]

    @classmethod
    def load(cls, path: Path) -> UserDirectory:
        """Read a users file.

        Raises:
            ConfigError: missing file, bad TOML, unknown role or no hash.
        """
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError("users file not found", path=str(path)) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                "users file does not parse", path=str(path), error=str(exc)
            ) from exc
        users: dict[str, User] = {}
        for name, item in raw.get("users", {}).items():
            try:
                role = Role(str(item.get("role", "")))
            except ValueError:
                raise ConfigError(
                    "unknown role", user=name, role=item.get("role")
                ) from None
            password = str(item.get("password", ""))
            if not password.startswith("scrypt$"):
                raise ConfigError("user has no scrypt password hash", user=name)
            users[name] = User(name=name, role=role, password_hash=password)
        return cls(users=users)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if the password is right, else None."""
        user = self.users.get(name)
        if user is None:
            # Spend the same time as a real check so names cannot be probed.
            verify_password(password, hash_password("", salt=b"\0" * _SALT_BYTES))
            return None
        return user if verify_password(password, user.password_hash) else None


def _main() -> None:
    """Print a users-file hash for a password read from the terminal."""
    password = getpass.getpass("password: ")
    print(hash_password(password))


if __name__ == "__main__":
    _main()
