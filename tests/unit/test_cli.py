"""The `sieve id check` command operators use."""

from __future__ import annotations

import json

from click.testing import CliRunner

from engine.cli import main


def test_id_check_prints_one_line_per_id_and_fails_on_any_invalid() -> None:
    """Valid and invalid IDs each get a line; one invalid ID makes exit 1."""
    result = CliRunner().invoke(
        main, ["id", "check", "11010519491231002X", "110105194912310021"]
    )
    lines = result.output.splitlines()
    assert 1 == result.exit_code
    assert ["11010519491231002X\tvalid"] == lines[:1]
    assert lines[1].startswith("110105194912310021\tinvalid: ")


def test_id_check_json_has_id_valid_and_reason() -> None:
    """--json prints {"id", "valid", "reason"} objects; all valid exits 0."""
    result = CliRunner().invoke(main, ["id", "check", "--json", "11010519491231002x"])
    assert 0 == result.exit_code
    assert {"id": "11010519491231002x", "valid": True, "reason": None} == json.loads(
        result.output
    )


def test_id_check_checks_other_document_types() -> None:
    """--type picks the document type's own rule."""
    result = CliRunner().invoke(
        main, ["id", "check", "--type", "HK_MACAO_PASS", "--json", "Q1"]
    )
    assert 1 == result.exit_code
    assert json.loads(result.output)["reason"]
