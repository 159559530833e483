"""Synthetic resident ID card photos (front side) with ground truth, for OCR tests.

A card is drawn at ISO ID-1 proportions (856x540 pixels at full scale, 10 px per
millimetre) with the usual fields in a CJK font from Debian's ``fonts-noto-cjk``
and the number in OCR-B from ``fonts-ocr-b`` (else a monospace font, see
:data:`ID_FONT_CANDIDATES`). It is then laid on a desk-like background and
photographed badly: rotation, scale, uneven light, blur, noise and JPEG loss,
each drawn at random up to a ``severity`` knob. Everything is reproducible from
the seed.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from perf.people import PersonFactory

__all__ = [
    "CARD_SIZE",
    "CardFactory",
    "CardTruth",
    "Damage",
    "FontMissing",
    "GeneratedCard",
    "id_font_name",
]

CARD_SIZE = (856, 540)
"""Full-scale card width and height in pixels (85.6 x 54 mm at 10 px/mm)."""

CJK_FONT_CANDIDATES = (
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", "Noto Sans CJK SC"),
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", "WenQuanYi Zen Hei"),
)
"""Fonts for labels and values, first found wins (Debian packages fonts-noto-cjk,
fonts-wqy-zenhei)."""

ID_FONT_CANDIDATES = (
    ("/usr/share/fonts/opentype/ocr-b/OCRB.otf", "OCR B"),
    ("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf", "DejaVu Sans Mono"),
)
"""Fonts for the number: OCR-B (Debian fonts-ocr-b) as printed on real cards, else
DejaVu Sans Mono (fonts-dejavu-core), a monospace stand-in."""

ETHNICITIES = ("汉",) * 12 + (
    "回", "满", "蒙古", "壮", "维吾尔", "藏", "苗", "土家",
)  # fmt: skip
PROVINCE_NAMES = {
    "11": "北京市", "12": "天津市", "13": "河北省", "14": "山西省",
    "15": "内蒙古", "21": "辽宁省", "22": "吉林省", "23": "黑龙江省",
    "31": "上海市", "32": "江苏省", "33": "浙江省", "34": "安徽省",
    "35": "福建省", "36": "江西省", "37": "山东省", "41": "河南省",
    "42": "湖北省", "43": "湖南省", "44": "广东省", "45": "广西",
    "46": "海南省", "50": "重庆市", "51": "四川省", "52": "贵州省",
    "53": "云南省", "54": "西藏", "61": "陕西省", "62": "甘肃省",
    "63": "青海省", "64": "宁夏", "65": "新疆",
}  # fmt: skip
DISTRICTS = (
    "和平区", "河东区", "河西区", "南开区", "城关区", "新华区", "中山区",
)  # fmt: skip
STREETS = "建设人民解放胜利和平幸福光明团结长江黄河友谊红旗朝阳新华文化"
LABEL_RGB = (38, 126, 190)
"""Field labels are printed in blue on real cards, values in black."""


class FontMissing(RuntimeError):
    """No usable font is installed; install the Debian packages named above."""


@dataclass(frozen=True, slots=True)
class Damage:
    """How one photo was spoiled (all drawn up to the severity)."""

    angle_deg: float
    scale: float
    light_drop: float
    blur_sigma_px: float
    noise_sigma: float
    jpeg_quality: int


@dataclass(frozen=True, slots=True)
class CardTruth:
    """What is printed on a generated card, and where the card lies in the photo.

    Attributes:
        corners: card corners in the photo, clockwise from top-left, in pixels.
    """

    name: str
    id_number: str
    sex: str
    ethnicity: str
    birth: dt.date
    address: str
    damage: Damage
    corners: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class GeneratedCard:
    """One photo of a card as a collector's phone would send it."""

    jpeg: bytes
    truth: CardTruth


@cache
def _font_path(candidates: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    for path, name in candidates:
        if Path(path).exists():
            return path, name
    raise FontMissing(f"none of {[p for p, _ in candidates]} is installed")


@cache
def _font(candidates: tuple[tuple[str, str], ...], size: int) -> ImageFont.FreeTypeFont:
    path, name = _font_path(candidates)
    if path.endswith(".ttc"):
        for index in range(16):
            font = ImageFont.truetype(path, size, index=index)
            if font.getname()[0] == name:
                return font
    return ImageFont.truetype(path, size)


def id_font_name() -> str:
    """Family name of the font the number is printed in (OCR B when installed)."""
    return _font_path(ID_FONT_CANDIDATES)[1]


class CardFactory:
    """Draws random valid residents' cards and spoils their photos.

    Each card's person comes from :class:`~perf.people.PersonFactory`; sex and
    birth date are read back from the ID number so the card agrees with it.
    Damage parameters are drawn uniformly between none and ``severity`` times
    their maximum: rotation up to 4 degrees either way, scale down to 0.5, light
    falling off by up to 45 % across the card, Gaussian blur up to 1.2 px, noise
    up to sigma 10 (of 255) and JPEG quality down to 40.

    Args:
        seed: makes every card and photo reproducible.
        severity: 0 (clean, full scale) to 1 (worst).
    """

    def __init__(self, seed: int = 0, *, severity: float = 1.0) -> None:
        if not 0.0 <= severity <= 1.0:
            raise ValueError(f"severity must be in [0, 1], got {severity}")
        self._rng = random.Random(seed)
        self._np = np.random.default_rng(seed)
        self._people = PersonFactory(seed)
        self.severity = severity

    # TODO: names come from PersonFactory's Han list only; minority names with
    # a middle dot (阿依古丽·买买提) and rare characters are not exercised.
    def card(self) -> GeneratedCard:
        """The next card: a new resident, drawn and photographed."""
        person = self._people.person()
        number = person.id_number
        birth = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
        sex = "男" if int(number[16]) % 2 else "女"
        ethnicity = self._rng.choice(ETHNICITIES)
        address = self._address(number)
        clean = self._draw(person.name, sex, ethnicity, birth, address, number)
        damage = self._damage()
        photo, corners = self._photograph(clean, damage)
        truth = CardTruth(
            name=person.name,
            id_number=number,
            sex=sex,
            ethnicity=ethnicity,
            birth=birth,
            address=address,
            damage=damage,
            corners=corners,
        )
        return GeneratedCard(jpeg=photo, truth=truth)

    def cards(self, count: int) -> list[GeneratedCard]:
        """The next ``count`` cards."""
        return [self.card() for _ in range(count)]

    def _address(self, number: str) -> str:
        rng = self._rng
        province = PROVINCE_NAMES.get(number[:2], "天津市")
        district = rng.choice(DISTRICTS)
        street = "".join(rng.choice(STREETS) for _ in range(2))
        street += rng.choice(("路", "道", "街"))
        tail = f"{rng.randrange(1, 400)}号"
        if rng.random() < 0.7:
            tail += f"{rng.randrange(1, 30)}号楼{rng.randrange(1, 7)}门"
            tail += f"{rng.randrange(1, 30)}{rng.randrange(1, 5):02d}号"
        return province + district + street + tail

    def _draw(
        self,
        name: str,
        sex: str,
        ethnicity: str,
        birth: dt.date,
        address: str,
        number: str,
    ) -> Image.Image:
        rng = self._rng
        width, height = CARD_SIZE
        image = self._card_background(width, height)
        draw = ImageDraw.Draw(image)
        dx, dy = rng.randint(-6, 6), rng.randint(-6, 6)
        ink = tuple(rng.randint(10, 40) for _ in range(3))
        label_font = _font(CJK_FONT_CANDIDATES, 22)
        value_font = _font(CJK_FONT_CANDIDATES, 26)
        name_font = _font(CJK_FONT_CANDIDATES, rng.randint(29, 32))
        id_font = _font(ID_FONT_CANDIDATES, rng.randint(33, 35))
        x_label, x_value = 64 + dx, 150 + dx

        def label(x: int, y: int, text: str) -> None:
            draw.text((x, y + dy), text, font=label_font, fill=LABEL_RGB)

        label(x_label, 66, "姓 名")
        draw.text((x_value, 58 + dy), name, font=name_font, fill=ink)
        label(x_label, 128, "性 别")
        draw.text((x_value, 124 + dy), sex, font=value_font, fill=ink)
        label(x_value + 112, 128, "民 族")
        draw.text((x_value + 200, 124 + dy), ethnicity, font=value_font, fill=ink)
        label(x_label, 190, "出 生")
        when = f"{birth.year}  年  {birth.month}  月  {birth.day}  日"
        draw.text((x_value, 186 + dy), when, font=value_font, fill=ink)
        label(x_label, 252, "住 址")
        for row, start in enumerate(range(0, len(address), 14)):
            draw.text(
                (x_value, 248 + dy + 38 * row),
                address[start : start + 14],
                font=value_font,
                fill=ink,
            )
        label(x_label, 456, "公民身份号码")
        spacing = rng.uniform(2.0, 4.0)
        x = 278.0 + dx
        for char in number:
            draw.text((x, 450 + dy), char, font=id_font, fill=ink)
            x += id_font.getlength(char) + spacing
        self._draw_portrait(draw)
        return image

    def _card_background(self, width: int, height: int) -> Image.Image:
        # Drawn at quarter resolution and enlarged: the pattern is smooth, and
        # full-resolution trigonometry would dominate the generator's time.
        rng = self._np
        small_w, small_h = width // 4, height // 4
        xs = np.linspace(0.0, 1.0, small_w, dtype=np.float32)[None, :]
        ys = np.linspace(0.0, 1.0, small_h, dtype=np.float32)[:, None]
        base = np.array([244, 243, 236], dtype=np.float32)
        tint = np.array([-14, -4, 6], dtype=np.float32) * rng.uniform(0.5, 1.0)
        image = base + (xs * 0.7 + ys * 0.3)[..., None] * tint
        # Faint guilloche: a few sine bands in pale blue and rose.
        for _ in range(6):
            freq = rng.uniform(4, 14)
            phase = rng.uniform(0, 2 * math.pi)
            band = np.sin(2 * math.pi * freq * xs + phase + 9 * ys) ** 16
            colour = rng.choice([[-22, -10, 0], [0, -16, -10]]).astype(np.float32)
            image = image + band[..., None] * colour * rng.uniform(0.3, 0.7)
        small = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
        return small.resize((width, height), Image.Resampling.BILINEAR)

    def _draw_portrait(self, draw: ImageDraw.ImageDraw) -> None:
        rng = self._rng
        shade = rng.randint(70, 150)
        left, top = 590, 80
        draw.rectangle((left, top, left + 200, top + 250), fill=(226, 232, 238))
        draw.ellipse(
            (left + 55, top + 40, left + 145, top + 150),
            fill=(shade, shade - 10, shade - 20),
        )
        draw.pieslice(
            (left + 15, top + 150, left + 185, top + 330),
            180,
            360,
            fill=(shade - 30, shade - 30, shade - 25),
        )

    # TODO: no perspective (keystone), glare, motion blur, fingers or holder
    # sleeves, and no back side; real photos have them, so figures measured on
    # these cards are an upper bound until checked on real photos.
    def _damage(self) -> Damage:
        rng, level = self._rng, self.severity
        return Damage(
            angle_deg=rng.uniform(-4.0, 4.0) * level,
            scale=1.0 - rng.uniform(0.0, 0.5) * level,
            light_drop=rng.uniform(0.0, 0.45) * level,
            blur_sigma_px=rng.uniform(0.0, 1.2) * level,
            noise_sigma=rng.uniform(0.0, 10.0) * level,
            jpeg_quality=round(95 - rng.uniform(0.0, 55.0) * level),
        )

    def _photograph(
        self, card: Image.Image, damage: Damage
    ) -> tuple[bytes, tuple[tuple[float, float], ...]]:
        rng = self._rng
        width, height = card.size
        margin_x = rng.randint(60, 110)
        margin_y = rng.randint(50, 90)
        desk = rng.choice([(112, 78, 52), (86, 88, 94), (48, 66, 104), (150, 150, 146)])
        canvas_size = (width + 2 * margin_x, height + 2 * margin_y)
        grain = self._np.standard_normal(
            (canvas_size[1], canvas_size[0], 1), dtype=np.float32
        )
        desk_pixels = np.asarray(desk, dtype=np.float32) + 8.0 * grain
        canvas = Image.fromarray(np.clip(desk_pixels, 0, 255).astype(np.uint8))
        mask = Image.new("L", card.size, 0)
        ImageDraw.Draw(mask).rounded_rectangle(
            (0, 0, width - 1, height - 1), 30, fill=255
        )
        canvas.paste(card, (margin_x, margin_y), mask)
        canvas = canvas.rotate(
            damage.angle_deg, resample=Image.Resampling.BICUBIC, fillcolor=desk
        )
        corners = _rotated_corners(
            canvas_size, (margin_x, margin_y), card.size, damage.angle_deg
        )
        out_size = (
            round(canvas_size[0] * damage.scale),
            round(canvas_size[1] * damage.scale),
        )
        canvas = canvas.resize(out_size, Image.Resampling.BILINEAR)
        corners = tuple((x * damage.scale, y * damage.scale) for x, y in corners)
        if damage.blur_sigma_px > 0.05:
            canvas = canvas.filter(ImageFilter.GaussianBlur(damage.blur_sigma_px))
        pixels = np.asarray(canvas, dtype=np.float32)
        pixels *= self._light_field(out_size, damage.light_drop)[..., None]
        noise = self._np.standard_normal(pixels.shape, dtype=np.float32)
        pixels += damage.noise_sigma * noise
        photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        buffer = io.BytesIO()
        photo.save(buffer, format="JPEG", quality=damage.jpeg_quality)
        return buffer.getvalue(), corners

    def _light_field(self, size: tuple[int, int], drop: float) -> np.ndarray:
        width, height = size
        theta = self._rng.uniform(0, 2 * math.pi)
        xs = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
        ys = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
        ramp = xs * math.cos(theta) + ys * math.sin(theta) + 0.5  # 0..1 across
        spot_x, spot_y = self._rng.uniform(-0.4, 0.4), self._rng.uniform(-0.4, 0.4)
        spot = np.exp(-((xs - spot_x) ** 2 + (ys - spot_y) ** 2) / 0.08)
        return 1.0 - drop * np.clip(ramp, 0, 1) + 0.08 * drop * spot


def _rotated_corners(
    canvas_size: tuple[int, int],
    offset: tuple[int, int],
    card_size: tuple[int, int],
    angle_deg: float,
) -> tuple[tuple[float, float], ...]:
    """Card corners after PIL's counter-clockwise rotation about the centre."""
    cx, cy = canvas_size[0] / 2, canvas_size[1] / 2
    left, top = offset
    right, bottom = left + card_size[0], top + card_size[1]
    angle = math.radians(angle_deg)
    cos, sin = math.cos(angle), math.sin(angle)
    points = ((left, top), (right, top), (right, bottom), (left, bottom))
    return tuple(
        (cx + (x - cx) * cos + (y - cy) * sin, cy - (x - cx) * sin + (y - cy) * cos)
        for x, y in points
    )
