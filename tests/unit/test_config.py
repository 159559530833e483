"""Settings read from SIEVE_* variables."""

from __future__ import annotations

import pytest

from engine.config import Settings
from engine.exceptions import ConfigError


def test_variables_override_defaults_with_their_types() -> None:
    """Numbers, lists and paths are cast from their variables."""
    settings = Settings.from_env(
        {"SIEVE_BATCH_WAIT_MS": "2.5", "SIEVE_CQL_HOSTS": "10.0.0.1, 10.0.0.2"}
    )
    assert 2.5 == settings.batch_wait_ms
    assert ("10.0.0.1", "10.0.0.2") == settings.cql_hosts


def test_malformed_variable_names_itself() -> None:
    """A value that does not parse raises an error naming variable and type."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"SIEVE_CQL_PORT": "ninety"})
    assert "SIEVE_CQL_PORT" == caught.value.fields["variable"]
    assert "int" == caught.value.fields["expected"]


@pytest.mark.parametrize(
    "name", ["SIEVE_BATCH_MAX_RECORDS", "SIEVE_MAX_INFLIGHT_RECORDS"]
)
def test_limits_below_one_are_refused(name: str) -> None:
    """A zero batch size or in-flight limit cannot run and is refused."""
    with pytest.raises(ConfigError):
        Settings.from_env({name: "0"})
