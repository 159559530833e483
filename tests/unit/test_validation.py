"""The gateway's registration checks, field by field."""

from __future__ import annotations

import time
import uuid

import pytest

from engine.auth import AuthenticatedDevice
from engine.barcodes import make_tube_code
from engine.city import load_city
from engine.config import REPO_ROOT
from engine.registration import Registration, RejectReason
from engine.validation import RegistrationValidator, Rejection, check_name
from sieve.v1 import ingest_pb2

CITY = load_city(REPO_ROOT / "config" / "tianjin.toml")
DEVICE = AuthenticatedDevice(
    id="120101-001-D0001", site="120101-001", district="120101"
)
NOW_MS = time.time_ns() // 1_000_000


def _message(**changes: object) -> ingest_pb2.Registration:
    fields: dict[str, object] = dict(
        registration_id=str(uuid.uuid4()),
        round=3,
        tube_barcode=make_tube_code("120101-001", 1),
        name="张三",
        document_type=ingest_pb2.RESIDENT_ID_CARD,
        document_number="11010519491231002X",
        site_id="120101-002",
        collector_id="C000001",
        captured_at_ms=NOW_MS - 1000,
    )
    fields.update(changes)
    return ingest_pb2.Registration(**fields)  # type: ignore[arg-type]


def _validate(message: ingest_pb2.Registration) -> Registration | Rejection:
    validator = RegistrationValidator(CITY, max_capture_age_h=72, max_clock_skew_s=300)
    return validator.validate(message, DEVICE, NOW_MS, uuid.uuid4().bytes)


def test_valid_registration_takes_its_district_from_the_site() -> None:
    """A good registration is normalised and gets the site's district."""
    message = _message(document_number="11010519491231002x", name=" 张  三 ")
    result = _validate(message)
    assert isinstance(result, Registration)
    assert "120101" == result.district
    assert "11010519491231002X" == result.doc_number
    assert "张 三" == result.name


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"registration_id": "not-a-uuid"}, RejectReason.INVALID_REGISTRATION_ID),
        ({"round": 0}, RejectReason.INVALID_ROUND),
        ({"tube_barcode": "T1"}, RejectReason.INVALID_TUBE_BARCODE),
        ({"tube_barcode": "T12010100100000012"}, RejectReason.INVALID_TUBE_BARCODE),
        (
            {"tube_barcode": make_tube_code("120102-001", 1)},
            RejectReason.TUBE_OTHER_DISTRICT,
        ),
        ({"collector_id": ""}, RejectReason.INVALID_COLLECTOR),
        ({"site_id": "999999-001"}, RejectReason.UNKNOWN_SITE),
        ({"site_id": "120102-001"}, RejectReason.SITE_NOT_ALLOWED),
        ({"captured_at_ms": NOW_MS + 3_600_000}, RejectReason.INVALID_CAPTURED_AT),
        ({"captured_at_ms": NOW_MS - 80 * 3_600_000}, RejectReason.INVALID_CAPTURED_AT),
        ({"name": ""}, RejectReason.INVALID_NAME),
        ({"name": "张3"}, RejectReason.INVALID_NAME),
        ({"name": "张\x07三"}, RejectReason.INVALID_NAME),
        ({"name": "王" * 31}, RejectReason.INVALID_NAME),
        ({"document_type": 0}, RejectReason.INVALID_DOCUMENT_TYPE),
        ({"document_type": 42}, RejectReason.INVALID_DOCUMENT_TYPE),
        (
            {"document_number": "110105194912310021"},
            RejectReason.INVALID_DOCUMENT_NUMBER,
        ),
    ],
)
def test_each_broken_rule_is_rejected_with_its_reason(
    changes: dict[str, object], reason: RejectReason
) -> None:
    """A registration breaking one rule is refused with that rule's reason."""
    result = _validate(_message(**changes))
    assert isinstance(result, Rejection)
    assert reason == result.reason
    assert result.message


def test_rejection_message_never_contains_the_document_number() -> None:
    """Messages name the rule, not the person's number."""
    result = _validate(_message(document_number="110105194912310021"))
    assert isinstance(result, Rejection)
    assert "110105194912310021" not in result.message


@pytest.mark.parametrize(
    "name",
    ["李", "欧阳娜娜", "阿依古丽·买买提", "John Smith", "O'Neil-Brown", "𠈌明"],
)
def test_real_name_shapes_are_accepted(name: str) -> None:
    """Chinese, minority, Latin and rare-character names pass."""
    assert name == check_name(name)


@pytest.mark.parametrize(
    "name", ["   ", "·", "李4", "<script>", "张\u200b三", "a\tb\nc\x00"]
)
def test_non_names_are_rejected(name: str) -> None:
    """Blank, punctuation-only, digits, markup and control characters fail."""
    assert isinstance(check_name(name), Rejection)
