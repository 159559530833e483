"""Synthetic population registries: unique valid residents with contacts, as CSV.

Residents get valid GB 11643 ID numbers (most with their district's own
region code), Chinese names from :mod:`perf.people`, mobile numbers and
street addresses in their district. ``python -m perf.registry_gen OUT.csv
--residents N`` writes a file ``sieve registry import`` reads.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import random
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, TextIO

from engine.city import load_city
from engine.config import Settings
from engine.documents import PROVINCE_CODES, check_id_character
from perf.people import PersonFactory

__all__ = ["RegistryGenerator", "RegistryRow", "write_csv"]

STREETS = "解放南和平成都南京卫津友谊黄河长江红旗复康津塘中山建设新华"
HEADER = ("id_number", "name", "phone", "address", "district")


class RegistryRow(NamedTuple):
    """One registry line as the CSV holds it."""

    id_number: str
    name: str
    phone: str
    address: str
    district: str


class RegistryGenerator:
    """Makes unique residents spread over districts by population.

    Args:
        districts: district code and population weight pairs.
        seed: random seed; the same seed gives the same residents.
        local_share: fraction whose ID carries their district's region code.
    """

    def __init__(
        self,
        districts: Sequence[tuple[str, int]],
        *,
        seed: int = 0,
        local_share: float = 0.85,
    ) -> None:
        self._rng = random.Random(seed)
        self._names = PersonFactory(seed + 1)
        self._codes = [code for code, _ in districts]
        self._weights = [weight for _, weight in districts]
        self._local_share = local_share
        self._provinces = sorted(PROVINCE_CODES - {"12", "71", "81", "82", "83"})
        self._seen: set[str] = set()

    def id_number(self, district: str) -> str:
        """A valid ID number not handed out before by this generator."""
        rng = self._rng
        while True:
            if rng.random() < self._local_share:
                region = district
            else:
                region = rng.choice(self._provinces)
                region += f"{rng.randrange(1, 100):02d}{rng.randrange(1, 30):02d}"
            birth = dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(0, 34_000))
            first17 = f"{region}{birth:%Y%m%d}{rng.randrange(0, 1000):03d}"
            number = first17 + check_id_character(first17)
            if number not in self._seen:
                self._seen.add(number)
                return number

    def row(self) -> RegistryRow:
        """One resident."""
        rng = self._rng
        district = rng.choices(self._codes, self._weights)[0]
        phone = f"1{rng.choice('3456789')}{rng.randrange(0, 10**9):09d}"
        street = rng.choice(STREETS) + rng.choice(STREETS)
        address = (
            f"天津市{district}{street}路{rng.randrange(1, 999)}号"
            f"{rng.randrange(1, 30)}栋{rng.randrange(1, 7)}单元"
            f"{rng.randrange(1, 33)}{rng.randrange(1, 5):02d}室"
        )
        return RegistryRow(
            self.id_number(district), self._names.name(), phone, address, district
        )

    def rows(self, count: int) -> Iterator[RegistryRow]:
        """``count`` residents."""
        for _ in range(count):
            yield self.row()


def city_districts(settings: Settings | None = None) -> list[tuple[str, int]]:
    """The configured city's districts with their populations."""
    settings = settings or Settings.from_env()
    city = load_city(settings.city_config)
    return [(d.code, d.population) for d in city.districts.values()]


def write_csv(handle: TextIO, rows: Iterable[Sequence[str]]) -> int:
    """Write the header and rows; returns the rows written."""
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(HEADER)
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m perf.registry_gen OUT.csv --residents N [--seed S]``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--residents", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    generator = RegistryGenerator(city_districts(), seed=args.seed)
    with args.out.open("w", encoding="utf-8", newline="") as handle:
        count = write_csv(handle, generator.rows(args.residents))
    print(f"wrote {count} residents to {args.out}")


if __name__ == "__main__":
    main()
