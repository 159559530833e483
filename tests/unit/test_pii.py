"""Sealing personal fields and keyed look-up hashes."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from engine.exceptions import ConfigError
from engine.pii import Keyring, PiiCipher, mask_document, mask_name


@pytest.fixture
def cipher(tmp_path: Path) -> PiiCipher:
    return PiiCipher(Keyring.load(tmp_path / "keys.toml", create=True))


def test_sealed_value_opens_only_for_its_own_row(cipher: PiiCipher) -> None:
    """A sealed name opens with its registration id and fails with another."""
    sealed = cipher.seal("张三", b"row-1")
    assert "张三" == cipher.open(sealed, b"row-1")
    with pytest.raises(InvalidTag):
        cipher.open(sealed, b"row-2")


def test_sealed_value_holds_no_plaintext(cipher: PiiCipher) -> None:
    """Neither the UTF-8 bytes of the name nor the number appear sealed."""
    number = "11010519491231002X"
    sealed = cipher.seal(number, b"row")
    assert number.encode() not in sealed
    assert cipher.seal(number, b"row") != sealed  # fresh nonce each time


def test_lookup_hash_is_stable_and_keyed(tmp_path: Path, cipher: PiiCipher) -> None:
    """The same number hashes alike under one key and differently under another."""
    first = cipher.lookup_hash(1, "11010519491231002X")
    assert first == cipher.lookup_hash(1, "11010519491231002X")
    other = PiiCipher(Keyring.load(tmp_path / "other.toml", create=True))
    assert first != other.lookup_hash(1, "11010519491231002X")


def test_keys_file_is_private_and_missing_file_is_an_error(tmp_path: Path) -> None:
    """A generated keys file is mode 0600; loading a missing one says so."""
    path = tmp_path / "keys.toml"
    Keyring.load(path, create=True)
    assert 0o600 == path.stat().st_mode & 0o777
    with pytest.raises(ConfigError):
        Keyring.load(tmp_path / "absent.toml")


def test_masks_keep_only_the_allowed_characters() -> None:
    """IDs show first 6 and last 4; names their first character."""
    assert "110105********002X" == mask_document("11010519491231002X")
    assert "张*" == mask_name("张三")
