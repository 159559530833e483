"""The city as Sieve knows it: districts, collection sites and devices.

Read once at start from a TOML file (``config/tianjin.toml`` in development).
A registration's district is always its collection site's district; a device
may register at any site of the district it belongs to.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.exceptions import CityConfigError

__all__ = ["City", "DeviceEntry", "District", "Site", "load_city"]


@dataclass(frozen=True, slots=True)
class District:
    """One administrative district and how many shards serve it."""

    code: str
    name: str
    population: int
    shards: int


@dataclass(frozen=True, slots=True)
class Site:
    """A collection site; it fixes the district of what is collected there."""

    id: str
    name: str
    district: str


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """A collector device and the digest of the token it must present.

    ``token_sha256`` is empty for devices whose token is derived from the
    device-token key (see :mod:`engine.auth`).
    """

    id: str
    site: str
    token_sha256: str = ""


@dataclass(frozen=True, slots=True)
class City:
    """Districts, sites and devices, indexed for the gateway's hot path."""

    name: str
    districts: Mapping[str, District]
    sites: Mapping[str, Site]
    devices: Mapping[str, DeviceEntry]
    revoked: frozenset[str]
    devices_per_site: int

    def district_of_site(self, site_id: str) -> str | None:
        """Return the district code of a site, or None for an unknown site."""
        site = self.sites.get(site_id)
        return None if site is None else site.district

    def device(self, device_id: str) -> DeviceEntry | None:
        """Return a configured or generated device, or None if there is none.

        Generated devices are named ``<site>-D<nnnn>`` with nnnn below
        ``devices_per_site``; they take their token from the device-token key.
        """
        entry = self.devices.get(device_id)
        if entry is not None:
            return entry
        site_id, sep, number = device_id.rpartition("-D")
        if not sep or site_id not in self.sites or not number.isdigit():
            return None
        if len(number) != 4 or int(number) >= self.devices_per_site:
            return None
        return DeviceEntry(id=device_id, site=site_id)

    def generated_device_ids(self) -> Iterator[str]:
        """Yield every generated device id, site by site."""
        for site_id in self.sites:
            for index in range(self.devices_per_site):
                yield f"{site_id}-D{index:04d}"

    @property
    def total_population(self) -> int:
        """Expected residents across all districts."""
        return sum(district.population for district in self.districts.values())


def load_city(path: Path, *, default_shards: int = 2) -> City:
    """Read and check a city file.

    Args:
        path: the TOML file.
        default_shards: shards for a district that names no count.

    Returns:
        The city.

    Raises:
        CityConfigError: the file is missing, does not parse, or refers to a
            district or site it does not define.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CityConfigError("city file not found", path=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise CityConfigError(
            "city file does not parse", path=str(path), error=str(exc)
        ) from exc

    districts = _read_districts(raw, default_shards)
    sites = _read_sites(raw, districts)
    devices_section = raw.get("devices", {})
    devices = _read_devices(devices_section, sites)
    per_site = int(devices_section.get("per_site", 0))
    if not 0 <= per_site <= 10_000:
        raise CityConfigError("devices.per_site must be 0..10000", value=per_site)
    return City(
        name=str(raw.get("city", {}).get("name", path.stem)),
        districts=districts,
        sites=sites,
        devices=devices,
        revoked=frozenset(devices_section.get("revoked", [])),
        devices_per_site=per_site,
    )


def _read_districts(raw: dict[str, Any], default_shards: int) -> dict[str, District]:
    districts: dict[str, District] = {}
    for item in raw.get("districts", []):
        code = str(item.get("code", ""))
        if not (len(code) == 6 and code.isdigit()):
            raise CityConfigError("district code must be 6 digits", code=code)
        if code in districts:
            raise CityConfigError("district defined twice", code=code)
        shards = int(item.get("shards", default_shards))
        if shards < 1:
            raise CityConfigError("district needs at least one shard", code=code)
        districts[code] = District(
            code=code,
            name=str(item.get("name", code)),
            population=int(item.get("population", 0)),
            shards=shards,
        )
    if not districts:
        raise CityConfigError("city file defines no district")
    return districts


def _read_sites(
    raw: dict[str, Any], districts: Mapping[str, District]
) -> dict[str, Site]:
    sites: dict[str, Site] = {}
    for item in raw.get("sites", []):
        site = Site(
            id=str(item["id"]),
            name=str(item.get("name", item["id"])),
            district=str(item["district"]),
        )
        if site.district not in districts:
            raise CityConfigError(
                "site names an unknown district", site=site.id, district=site.district
            )
        if site.id in sites:
            raise CityConfigError("site defined twice", site=site.id)
        if "-D" in site.id:
            raise CityConfigError("site ids may not contain '-D'", site=site.id)
        sites[site.id] = site
    return sites


def _read_devices(
    section: dict[str, Any], sites: Mapping[str, Site]
) -> dict[str, DeviceEntry]:
    devices: dict[str, DeviceEntry] = {}
    for item in section.get("registered", []):
        entry = DeviceEntry(
            id=str(item["id"]),
            site=str(item["site"]),
            token_sha256=str(item.get("token_sha256", "")).lower(),
        )
        if entry.site not in sites:
            raise CityConfigError(
                "device names an unknown site", device=entry.id, site=entry.site
            )
        devices[entry.id] = entry
    return devices
