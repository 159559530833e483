"""The city file: districts, sites, devices and their checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.auth import DeviceAuthenticator, make_device_token
from engine.city import load_city
from engine.config import REPO_ROOT
from engine.exceptions import AuthenticationError, CityConfigError
from engine.routing import DistrictRouter

TIANJIN = load_city(REPO_ROOT / "config" / "tianjin.toml")
KEY = b"k" * 32


def test_tianjin_has_its_sixteen_districts() -> None:
    """The shipped city file lists Tianjin's 16 districts with names."""
    assert 16 == len(TIANJIN.districts)
    assert "和平区" == TIANJIN.districts["120101"].name
    assert "120119" in TIANJIN.districts
    assert "120116" == TIANJIN.district_of_site("120116-001")


def test_generated_devices_exist_only_within_per_site(tmp_path: Path) -> None:
    """Device names past per_site or at unknown sites are not devices."""
    assert TIANJIN.device("120101-001-D0000") is not None
    assert TIANJIN.device("120101-001-D0500") is None
    assert TIANJIN.device("999999-001-D0000") is None
    assert TIANJIN.device("120101-001-D00") is None


def test_authenticator_accepts_right_token_and_refuses_the_rest() -> None:
    """Right token passes; wrong, unknown and revoked devices are refused."""
    auth = DeviceAuthenticator(TIANJIN, KEY)
    device = auth.authenticate(
        "120103-002-D0007", make_device_token(KEY, "120103-002-D0007")
    )
    assert "120103" == device.district
    for device_id, token in [
        ("120103-002-D0007", "wrong"),
        ("120103-002-D0999", make_device_token(KEY, "120103-002-D0999")),
        ("120101-001-D0499", make_device_token(KEY, "120101-001-D0499")),  # revoked
    ]:
        with pytest.raises(AuthenticationError):
            auth.authenticate(device_id, token)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "no district"),
        ('[[districts]]\ncode = "12"\n', "6 digits"),
        (
            '[[districts]]\ncode = "120101"\n'
            '[[sites]]\nid = "a"\ndistrict = "999999"\n',
            "unknown district",
        ),
        ("[[districts]\n", "does not parse"),
    ],
)
def test_bad_city_files_say_what_is_wrong(
    tmp_path: Path, text: str, problem: str
) -> None:
    """Each malformed city file is refused with a message naming the problem."""
    path = tmp_path / "city.toml"
    path.write_text(text)
    with pytest.raises(CityConfigError) as caught:
        load_city(path)
    assert problem in str(caught.value)


def test_router_keeps_an_id_on_one_shard_and_spreads_shards() -> None:
    """An id always maps to one shard of its district; hosts share the shards."""
    router = DistrictRouter(TIANJIN, num_hosts=4)
    shards = {router.shard_for("120116", bytes([i]) * 16) for i in range(64)}
    assert {"120116/0", "120116/1", "120116/2", "120116/3"} == shards
    assert router.shard_for("120116", b"x" * 16) == router.shard_for(
        "120116", b"x" * 16
    )
    hosts = {router.host_for(s) for s in router.shard_ids}
    assert {0, 1, 2, 3} == hosts
    assert sorted(router.shard_ids) == sorted(
        s for h in range(4) for s in router.shards_of_host(h)
    )
