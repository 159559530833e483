"""Which devices a gateway has heard from, when, and what each site stored.

Only the gateway sees devices live (stream opens, heartbeats, registrations),
so it keeps this small in-memory table for the console's site and device
drill-down. The table is bounded: past ``max_devices`` the device heard from
longest ago is forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass

__all__ = ["MAX_TRACKED_DEVICES", "DevicePresence", "DeviceSeen"]

MAX_TRACKED_DEVICES = 200_000
"""Devices remembered per gateway: above a whole city's collectors (Tianjin's
file makes 58,000), so only a flood of distinct devices evicts anyone."""


@dataclass(slots=True)
class DeviceSeen:
    """One device as this gateway knows it."""

    site: str
    district: str
    last_seen_ms: int
    num_stored: int = 0
    """Registrations of this device acked STORED by this gateway."""
    curr_streams: int = 0
    """Streams of this device open on this gateway now."""

    @property
    def online(self) -> bool:
        """Whether the device holds an open stream to this gateway."""
        return self.curr_streams > 0


# TODO: the table and the per-site counts are in memory and restart at zero
# with the gateway; devices are listed again as soon as they reconnect, but a
# site's count then covers only what was stored since. Per-site counts that
# survive restarts would need a per-site aggregate in the store.
class DevicePresence:
    """A bounded last-seen table of devices and per-site stored counts.

    Every call is O(1) and allocation-free for a known device, so the gateway
    may call it on every message.

    Args:
        max_devices: most devices remembered; the least recently seen one is
            forgotten first (its site count is kept).
    """

    def __init__(self, max_devices: int = MAX_TRACKED_DEVICES) -> None:
        if max_devices < 1:
            raise ValueError(f"max_devices must be at least 1, got {max_devices}")
        self.max_devices = max_devices
        self.num_evicted = 0
        self._devices: OrderedDict[str, DeviceSeen] = OrderedDict()
        self._site_stored: dict[tuple[int, str], int] = {}

    def seen(self, device: str, site: str, district: str, now_ms: int) -> DeviceSeen:
        """Note that ``device`` was heard from at ``now_ms``."""
        entry = self._devices.get(device)
        if entry is None:
            entry = self._devices[device] = DeviceSeen(site, district, now_ms)
            if len(self._devices) > self.max_devices:
                self._devices.popitem(last=False)
                self.num_evicted += 1
            return entry
        entry.last_seen_ms = max(entry.last_seen_ms, now_ms)
        self._devices.move_to_end(device)
        return entry

    def stream_opened(self, device: str, site: str, district: str, now_ms: int) -> None:
        """A stream of ``device`` opened."""
        self.seen(device, site, district, now_ms).curr_streams += 1

    def stream_closed(self, device: str) -> None:
        """A stream of ``device`` closed (a forgotten device is ignored)."""
        entry = self._devices.get(device)
        if entry is not None and entry.curr_streams > 0:
            entry.curr_streams -= 1

    def stored(
        self, device: str, site: str, district: str, round_no: int, now_ms: int
    ) -> None:
        """One registration of ``device`` at ``site`` was acked STORED."""
        self.seen(device, site, district, now_ms).num_stored += 1
        key = (round_no, site)
        self._site_stored[key] = self._site_stored.get(key, 0) + 1

    def site_stored(self, site: str, round_no: int = 0) -> int:
        """Registrations of ``site`` acked STORED, in one round (0: all)."""
        return sum(
            count
            for (stored_round, stored_site), count in self._site_stored.items()
            if stored_site == site and round_no in (0, stored_round)
        )

    def devices(self, sites: Collection[str]) -> list[tuple[str, DeviceSeen]]:
        """Remembered devices of the given sites, by device id."""
        return sorted(
            (device, entry)
            for device, entry in self._devices.items()
            if entry.site in sites
        )

    def __len__(self) -> int:
        return len(self._devices)
