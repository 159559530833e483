"""Console users: password hashes, the users file and the role gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.auth import (
    Page,
    Role,
    UserDirectory,
    can_open,
    hash_password,
    verify_password,
)
from engine.config import REPO_ROOT
from engine.exceptions import ConfigError


def test_hash_verifies_only_the_right_password() -> None:
    """A stored hash accepts its own password and refuses any other."""
    stored = hash_password("s3cret")
    assert verify_password("s3cret", stored)
    assert not verify_password("s3cret ", stored)
    assert not verify_password("", stored)


def test_hashes_are_salted() -> None:
    """Two hashes of one password differ because each has its own salt."""
    assert hash_password("same") != hash_password("same")


def test_malformed_hash_is_refused() -> None:
    """A hash in another format or with bad base64 never verifies."""
    assert not verify_password("x", "plain-text")
    assert not verify_password("x", "scrypt$16384$8$1$!!$!!")
    assert not verify_password("x", "bcrypt$16384$8$1$AA==$AA==")


def test_command_role_sees_dashboards_only() -> None:
    """Command users open dashboards but not operator pages; others open both."""
    assert can_open(Role.COMMAND, Page.DASHBOARD)
    assert not can_open(Role.COMMAND, Page.OPERATOR)
    assert can_open(Role.OPERATOR, Page.OPERATOR)
    assert can_open(Role.SRE, Page.OPERATOR)


def test_example_users_file_logs_in_with_documented_passwords() -> None:
    """The shipped example file's users log in with their documented passwords."""
    directory = UserDirectory.load(REPO_ROOT / "console" / "users.example.toml")
    user = directory.authenticate("chen", "command-demo")
    assert user is not None
    assert Role.COMMAND == user.role
    assert directory.authenticate("chen", "wrong") is None
    assert directory.authenticate("nobody", "command-demo") is None


def test_users_file_with_unknown_role_is_refused(tmp_path: Path) -> None:
    """A users file naming a role that does not exist does not load."""
    path = tmp_path / "users.toml"
    path.write_text(
        f'[users.x]\nrole = "admin"\npassword = "{hash_password("p")}"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError):
        UserDirectory.load(path)


def test_users_file_with_plain_password_is_refused(tmp_path: Path) -> None:
    """A users file holding a plain password instead of a hash does not load."""
    path = tmp_path / "users.toml"
    path.write_text('[users.x]\nrole = "sre"\npassword = "p"\n', encoding="utf-8")
    with pytest.raises(ConfigError):
        UserDirectory.load(path)
