"""The gateway's bounded table of devices heard from."""

from __future__ import annotations

import pytest

from engine.presence import DevicePresence

SITE, DISTRICT = "120101-001", "120101"


def test_device_is_online_while_a_stream_is_open() -> None:
    """Online follows open streams; last seen keeps the latest time."""
    presence = DevicePresence()
    presence.stream_opened("d1", SITE, DISTRICT, 1_000)
    presence.seen("d1", SITE, DISTRICT, 5_000)
    presence.seen("d1", SITE, DISTRICT, 4_000)
    [(device, seen)] = presence.devices({SITE})
    assert ("d1", True, 5_000) == (device, seen.online, seen.last_seen_ms)
    presence.stream_closed("d1")
    presence.stream_closed("d1")
    assert not presence.devices({SITE})[0][1].online


def test_stored_counts_per_device_and_site() -> None:
    """Each STORED ack counts for its device and for its site."""
    presence = DevicePresence()
    for at in range(3):
        presence.stored("d1", SITE, DISTRICT, 1, at)
    presence.stored("d2", SITE, DISTRICT, 2, 10)
    assert 4 == presence.site_stored(SITE)
    assert (3, 1) == (presence.site_stored(SITE, 1), presence.site_stored(SITE, 2))
    assert 0 == presence.site_stored("120101-002")
    assert [3, 1] == [seen.num_stored for _, seen in presence.devices({SITE})]


def test_least_recently_seen_device_is_forgotten_past_the_cap() -> None:
    """The table never grows past its cap; site counts survive eviction."""
    presence = DevicePresence(max_devices=2)
    presence.stored("old", SITE, DISTRICT, 1, 1)
    presence.seen("mid", SITE, DISTRICT, 2)
    presence.seen("old", SITE, DISTRICT, 3)
    presence.seen("new", SITE, DISTRICT, 4)
    assert ["new", "old"] == [device for device, _ in presence.devices({SITE})]
    assert (2, 1, 1) == (
        len(presence),
        presence.num_evicted,
        presence.site_stored(SITE),
    )


def test_only_devices_of_the_asked_sites_are_listed() -> None:
    """A drill-down into one site does not list another site's devices."""
    presence = DevicePresence()
    presence.seen("a", SITE, DISTRICT, 1)
    presence.seen("b", "120102-001", "120102", 1)
    assert ["a"] == [device for device, _ in presence.devices({SITE})]


def test_a_zero_cap_is_refused() -> None:
    """A table that can hold nothing is a configuration mistake."""
    with pytest.raises(ValueError, match="max_devices"):
        DevicePresence(max_devices=0)
