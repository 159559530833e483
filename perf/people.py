"""Synthetic residents: valid ID numbers from across the country, Chinese names.

Used by the load generator and tests. ID numbers are mostly of the city's own
region, with a share from every other province, birth dates spread over
0-95 years, and correct check characters.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from engine.documents import PROVINCE_CODES, check_id_character

__all__ = ["Person", "PersonFactory"]

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁"
    "谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付"
    "方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝"
)
GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚"
    "桂英华玉萍红建文辉力鹏宇浩然子轩梓涵欣怡思雨"
    "博文嘉怡俊杰雅婷志强海燕丹丹晓东立新国庆淑兰秀珍春梅永刚"
)
CITY_REGION_PREFIX = "1201"


@dataclass(frozen=True, slots=True)
class Person:
    """A resident as a collector's phone captures them."""

    name: str
    id_number: str


class PersonFactory:
    """Makes random valid residents, reproducibly from a seed.

    Args:
        seed: random seed.
        local_share: fraction whose ID carries the city's region code.
        city_districts: district codes for local IDs.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        local_share: float = 0.85,
        city_districts: tuple[str, ...] = ("120101", "120102", "120103", "120104"),
    ) -> None:
        self._rng = random.Random(seed)
        self._local_share = local_share
        self._districts = city_districts
        self._provinces = sorted(PROVINCE_CODES - {"71", "81", "82", "83"})

    def id_number(self, birth: dt.date | None = None) -> str:
        """A valid 18-character resident ID number."""
        rng = self._rng
        if rng.random() < self._local_share:
            region = rng.choice(self._districts)
        else:
            region = rng.choice(self._provinces) + f"{rng.randrange(1, 100):02d}"
            region += f"{rng.randrange(1, 30):02d}"
        if birth is None:
            birth = dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(0, 34_000))
        first17 = f"{region}{birth:%Y%m%d}{rng.randrange(0, 1000):03d}"
        return first17 + check_id_character(first17)

    def name(self) -> str:
        """A Chinese name of two or three characters."""
        rng = self._rng
        given = rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.6 else "")
        return rng.choice(SURNAMES) + given

    def person(self) -> Person:
        """A random resident."""
        return Person(name=self.name(), id_number=self.id_number())
