"""The city as Sieve knows it: districts, sites, labs and devices with roles.

Read once at start from a TOML file (``config/tianjin.toml`` in development).
A registration's district is always its collection site's district; a device
may register at any site of the district it belongs to.

Devices have one role each, told by their generated names:

* ``<site>-Dnnnn`` collectors (register residents, seal tubes),
* ``<site>-Pnn`` printers (allocate tube labels for their site),
* ``<district>-Tnnn`` transporters (box, sign for and carry tubes),
* ``<lab>-Lnn`` lab scanners (receive boxes, upload results).
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.exceptions import CityConfigError

__all__ = ["City", "DeviceEntry", "District", "Lab", "Role", "Site", "load_city"]


class Role(enum.StrEnum):
    """What a device may do; each gRPC call names the roles it accepts."""

    COLLECTOR = "collector"
    PRINTER = "printer"
    TRANSPORTER = "transporter"
    LAB = "lab"


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
class Lab:
    """A testing laboratory that receives boxes and uploads results."""

    code: str
    name: str


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """A device, its role, where it belongs, and the digest of its token.

    ``token_sha256`` is empty for devices whose token is derived from the
    device-token key (see :mod:`engine.auth`). ``site`` is set for collectors
    and printers, ``district`` for every role but labs, ``lab`` for labs.
    """

    id: str
    site: str
    token_sha256: str = ""
    role: Role = Role.COLLECTOR
    district: str = ""
    lab: str = ""


@dataclass(frozen=True, slots=True)
class City:
    """Districts, sites and devices, indexed for the gateway's hot path."""

    name: str
    districts: Mapping[str, District]
    sites: Mapping[str, Site]
    devices: Mapping[str, DeviceEntry]
    revoked: frozenset[str]
    devices_per_site: int
    labs: Mapping[str, Lab] = field(default_factory=dict)
    printers_per_site: int = 2
    transporters_per_district: int = 50
    devices_per_lab: int = 10

    def district_of_site(self, site_id: str) -> str | None:
        """Return the district code of a site, or None for an unknown site."""
        site = self.sites.get(site_id)
        return None if site is None else site.district

    def device(self, device_id: str) -> DeviceEntry | None:
        """Return a configured or generated device, or None if there is none.

        Generated devices (see the module docstring) take their token from the
        device-token key; the number must be below the configured count.
        """
        entry = self.devices.get(device_id)
        if entry is not None:
            return entry
        owner, sep, tail = device_id.rpartition("-")
        if not sep or len(tail) < 3 or not tail[1:].isdigit():
            return None
        kind, number = tail[0], int(tail[1:])
        width, limit = {
            "D": (5, self.devices_per_site),
            "P": (3, self.printers_per_site),
            "T": (4, self.transporters_per_district),
            "L": (3, self.devices_per_lab),
        }.get(kind, (0, 0))
        if len(tail) != width or number >= limit:
            return None
        if kind in "DP" and owner in self.sites:
            role = Role.COLLECTOR if kind == "D" else Role.PRINTER
            district = self.sites[owner].district
            return DeviceEntry(device_id, owner, role=role, district=district)
        if kind == "T" and owner in self.districts:
            return DeviceEntry(device_id, "", role=Role.TRANSPORTER, district=owner)
        if kind == "L" and owner in self.labs:
            return DeviceEntry(device_id, "", role=Role.LAB, lab=owner)
        return None

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
    counts = {
        name: _count(devices_section, name, default, limit)
        for name, default, limit in (
            ("per_site", 0, 10_000),
            ("printers_per_site", 2, 100),
            ("transporters_per_district", 50, 1_000),
            ("per_lab", 10, 100),
        )
    }
    return City(
        name=str(raw.get("city", {}).get("name", path.stem)),
        districts=districts,
        sites=sites,
        devices=devices,
        revoked=frozenset(devices_section.get("revoked", [])),
        devices_per_site=counts["per_site"],
        labs=_read_labs(raw),
        printers_per_site=counts["printers_per_site"],
        transporters_per_district=counts["transporters_per_district"],
        devices_per_lab=counts["per_lab"],
    )


def _count(section: dict[str, Any], name: str, default: int, limit: int) -> int:
    value = int(section.get(name, default))
    if not 0 <= value < limit:
        raise CityConfigError(f"devices.{name} must be 0..{limit - 1}", value=value)
    return value


def _read_labs(raw: dict[str, Any]) -> dict[str, Lab]:
    labs: dict[str, Lab] = {}
    for item in raw.get("labs", []):
        code = str(item.get("code", ""))
        if not (code.isascii() and code.isalnum() and code.isupper()):
            raise CityConfigError(
                "lab code must be upper-case letters/digits", code=code
            )
        if code in labs:
            raise CityConfigError("lab defined twice", code=code)
        labs[code] = Lab(code=code, name=str(item.get("name", code)))
    return labs


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
        site = str(item["site"])
        if site not in sites:
            raise CityConfigError(
                "device names an unknown site", device=str(item["id"]), site=site
            )
        try:
            role = Role(str(item.get("role", Role.COLLECTOR)))
        except ValueError:
            raise CityConfigError(
                "device role must be collector or printer", device=str(item["id"])
            ) from None
        if role not in (Role.COLLECTOR, Role.PRINTER):
            raise CityConfigError(
                "device role must be collector or printer", device=str(item["id"])
            )
        entry = DeviceEntry(
            id=str(item["id"]),
            site=site,
            token_sha256=str(item.get("token_sha256", "")).lower(),
            role=role,
            district=sites[site].district,
        )
        devices[entry.id] = entry
    return devices
