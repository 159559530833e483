"""Re-reading the name and ID number from ID card photos with PP-OCR models."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import time
import tomllib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import structlog

from engine.config import REPO_ROOT
from engine.documents import InvalidDocument, validate_resident_id
from engine.exceptions import IngestError
from engine.pii import mask_document, mask_name

__all__ = [
    "CardReader",
    "OcrModelError",
    "OcrRead",
    "decode_id_number",
    "load_model_paths",
]

log = structlog.get_logger()

MANIFEST = REPO_ROOT / "ocr_models" / "manifest.toml"
CARD_W, CARD_H = 856, 540
"""Rectified card size: ISO ID-1 at 10 px/mm, the layout constants' frame."""
NAME_REGION = (135, 40, 480, 116, 30)
"""x0, y0, x1, y1 of the name on a rectified card (label excluded), and the
height of its ink in pixels."""
ID_REGION = (250, 422, 840, 512, 26)
"""The same for the 18-character number."""
ID_SQUEEZE = 0.6
"""The number's crop is narrowed to this share of its width before rec: OCR-B
digits are wide-set, 3 CTC frames a digit still read them, and every crop of
the batch is padded to this, the widest, so it sets the rec model's cost."""
ID_LINE_CENTRE, ID_LINE_WIDTH = (524.0, 469.0), 492.0
"""Centre and width of the number's ink, to place the card from that line alone."""
REC_HEIGHT, MAX_REC_WIDTH = 48, 960
"""The rec model's input height; crops are padded to the batch's widest."""
INK_RATIO = 0.7
"""A pixel is ink when its brightest channel is under this share of the local
paper brightness: black print passes, even blurred; the blue labels (~0.8) and
the background pattern (~0.9) do not."""
PAD_Y, PAD_X = 0.3, 0.4
"""Margins added around the ink, as shares of the text height: PP-OCR's rec
model was trained on crops whose text fills about two thirds of the height."""
BEAM_WIDTH, TOP_PER_FRAME, MIN_SYMBOL_P = 16, 4, 1e-3
"""CTC prefix beam: hypotheses kept, symbols tried per frame, and the least
probability worth trying (below it a symbol cannot change the ranking)."""
ID_SYMBOLS = "0123456789X"
NAME_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF))
NAME_EXTRA = "·"


class OcrModelError(IngestError):
    """The OCR model files are missing or are not the ones the manifest names."""


@dataclass(frozen=True, slots=True)
class OcrRead:
    """What the server read from one card photo.

    Attributes:
        name: the name as read ("" when nothing was read).
        id_number: the number as read; when ``id_valid`` is false it fails the
            GB 11643 rules and cannot be a genuine card's number.
        confidence: the lower of the two field confidences, 0..1.
        name_confidence: posterior share of ``name`` among the beam's reads.
        id_confidence: posterior share of ``id_number`` among the beam's reads;
            0 when no read passes the check character.
        id_valid: the number passes length, province, date and check rules.
        name_candidates: other reads of the name with their shares, best first.
        id_candidates: valid reads of the number with their shares, best first.
        locator: how the card was found: ``edges``, ``text`` or ``none``.
    """

    name: str
    id_number: str
    confidence: float
    name_confidence: float
    id_confidence: float
    id_valid: bool
    name_candidates: tuple[tuple[str, float], ...] = ()
    id_candidates: tuple[tuple[str, float], ...] = ()
    locator: str = "none"

    def __repr__(self) -> str:
        return (
            f"OcrRead(name={mask_name(self.name)!r}, "
            f"id_number={mask_document(self.id_number)!r}, "
            f"confidence={self.confidence:.3f}, locator={self.locator!r})"
        )


def load_model_paths(manifest: Path = MANIFEST) -> dict[str, Path]:
    """Find the model files the manifest names and check their sha256.

    Args:
        manifest: TOML file naming the package and each model's path and hash.

    Returns:
        Absolute model paths by role (``det``, ``rec``).

    Raises:
        OcrModelError: the package or a file is missing, or a hash differs.
    """
    spec = tomllib.loads(manifest.read_text(encoding="utf-8"))
    found = importlib.util.find_spec(spec["package"])
    if found is None or not found.submodule_search_locations:
        raise OcrModelError("model package is not installed", package=spec["package"])
    root = Path(next(iter(found.submodule_search_locations)))
    paths = {}
    for role, entry in spec["models"].items():
        path = root / entry["path"]
        if not path.is_file():
            raise OcrModelError("model file is missing", role=role, path=str(path))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != entry["sha256"]:
            raise OcrModelError(
                "model file hash differs from the manifest",
                role=role,
                path=str(path),
                sha256=digest,
            )
        paths[role] = path
    return paths


class CardReader:
    """Reads the name and ID number from resident ID card photos, in batches.

    Algorithm: each photo is decoded and the card is found from its outline
    (edges, then the largest card-shaped rotated rectangle); where no outline
    is found the det model finds the widest text line, the number, and the card
    is placed from it. The card is warped to 856x540, where the name and number
    sit in fixed regions; each region is tightened to its black ink. All crops
    of a batch go to the rec model in ONE call, padded to the widest. Each field
    is decoded by a CTC prefix beam over its own alphabet (digits and X for the
    number, CJK ideographs for the name); for the number the best hypothesis
    that passes the ISO 7064 check character, province and birth date wins,
    which repairs most single-character misreads.

    Costs and caps: rec output is ~3 MB per crop (18,710 classes), so a batch
    of 64 photos holds ~0.4 GB for a moment; callers cap batch size (the
    DynamicBatcher does). No call blocks on anything but the CPU or GPU, and
    there is no timeout inside: a batch of B photos takes ~60 ms x B of one
    CPU core; callers bound the wait from outside (the OCR pool's timeout).

    Args:
        threads: onnxruntime intra-op threads (None: one per core).
        providers: execution providers; default CUDA when available, else CPU.
        manifest: model manifest to load and verify.
    """

    def __init__(
        self,
        *,
        threads: int | None = None,
        providers: list[str] | None = None,
        manifest: Path = MANIFEST,
    ):
        paths = load_model_paths(manifest)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if providers is None:
            providers = ["CPUExecutionProvider"]
            if "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
        if "CUDAExecutionProvider" in providers and hasattr(ort, "preload_dlls"):
            ort.preload_dlls()  # CUDA and cuDNN from NVIDIA's pip wheels, if there
        self._det, self._rec = (
            ort.InferenceSession(str(paths[role]), options, providers=providers)
            for role in ("det", "rec")
        )
        self.provider = self._rec.get_providers()[0]
        meta = self._rec.get_modelmeta().custom_metadata_map
        classes = ["<blank>", *meta["character"].split("\n"), " "]
        self._id_cols = np.array([0] + [classes.index(c) for c in ID_SYMBOLS])
        name_cols = [0] + [i for i, c in enumerate(classes) if _is_name_char(c)]
        self._name_cols = np.array(name_cols)
        self._name_chars = [classes[i] for i in name_cols]
        log.info("ocr_reader_ready", provider=self.provider, classes=len(classes))

    def read_batch(
        self, images: list[bytes], today: dt.date | None = None
    ) -> list[OcrRead]:
        """Read every photo of a batch with one rec inference call.

        Args:
            images: encoded photos (JPEG or PNG), one card each.
            today: date births may not be after (default: today).

        Returns:
            One read per photo, in order; an undecodable photo reads empty
            with confidence 0.
        """
        if not images:
            return []
        started = time.perf_counter()
        crops: list[np.ndarray] = []
        locators: list[str] = []
        for blob in images:
            card, locator = self._rectify(blob)
            locators.append(locator)
            number = _ink_crop(card, ID_REGION)
            squeezed = (round(number.shape[1] * ID_SQUEEZE), number.shape[0])
            crops += [_ink_crop(card, NAME_REGION), cv2.resize(number, squeezed)]
        probs = self._recognise(crops)
        inference_ms = round((time.perf_counter() - started) * 1000, 1)
        log.debug("ocr_batch", images=len(images), inference_ms=inference_ms)
        today = today or dt.date.today()
        return [
            self._decode(probs[2 * i], probs[2 * i + 1], locators[i], today)
            for i in range(len(images))
        ]

    def _rectify(self, blob: bytes) -> tuple[np.ndarray, str]:
        image = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            return np.full((CARD_H, CARD_W, 3), 255, np.uint8), "none"
        height, width = image.shape[:2]
        corners, locator = _card_corners(image), "edges"
        # TODO: when the outline gives an invalid number, a second pass placed
        # by the det model could rescue it; needs a second rec call per batch.
        if corners is None:
            corners, locator = self._corners_from_text(image), "text"
        if corners is None:
            corners, locator = _frame(width, height), "none"
        matrix = cv2.getPerspectiveTransform(corners, _frame(CARD_W, CARD_H))
        size, border = (CARD_W, CARD_H), cv2.BORDER_REPLICATE
        return cv2.warpPerspective(image, matrix, size, borderMode=border), locator

    def _corners_from_text(self, image: np.ndarray) -> np.ndarray | None:
        # The number is the widest text line on the card; its box fixes the
        # card's rotation, scale and position through the layout constants.
        # TODO: only rotation and scale are recovered here (no perspective),
        # and a wider stray line (a long address) would be taken for the
        # number; fit the whole layout to all det boxes to make this robust.
        scale = min(1.0, 960 / max(image.shape[:2]))
        height = max(32, round(image.shape[0] * scale / 32) * 32)
        width = max(32, round(image.shape[1] * scale / 32) * 32)
        resized = cv2.resize(image, (width, height))
        tensor = (resized.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)
        prob = self._det.run(None, {"x": tensor[None]})[0][0, 0]
        contours, _ = cv2.findContours(
            (prob > 0.3).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        boxes = [cv2.minAreaRect(c) for c in contours if len(c) >= 4]
        boxes = [b for b in boxes if max(b[1]) >= 8 * max(min(b[1]), 1.0)]
        if not boxes:
            return None
        points = cv2.boxPoints(max(boxes, key=lambda b: max(b[1])))
        points *= np.array(
            [image.shape[1] / width, image.shape[0] / height], dtype=np.float32
        )
        sides = [points[1] - points[0], points[2] - points[1]]
        along, across = sorted(sides, key=lambda v: -float(np.hypot(*v)))
        if along[0] < 0:
            along = -along
        angle = float(np.arctan2(along[1], along[0]))
        # det marks a shrunk text kernel; PP-OCR's unclip grows it by ~1.6x area.
        line_w = float(np.hypot(*along)) + 1.6 * float(np.hypot(*across))
        scale = line_w / ID_LINE_WIDTH
        cos, sin = np.cos(angle), np.sin(angle)
        rot = np.array([[cos, -sin], [sin, cos]])
        centre = np.array(ID_LINE_CENTRE, dtype=np.float32)
        offsets = (_frame(CARD_W, CARD_H) - centre) @ rot.T * scale
        corners: np.ndarray = (points.mean(axis=0) + offsets).astype(np.float32)
        return corners

    def _recognise(self, crops: list[np.ndarray]) -> np.ndarray:
        # TODO: name crops (~150 px) are padded to the number's width (~350 px
        # squeezed), so over half of the name rows' compute is padding; packing
        # two names per row would save it but breaks one-crop-per-row decoding.
        ratios = [c.shape[1] / max(c.shape[0], 1) for c in crops]
        widths = [
            min(MAX_REC_WIDTH, max(REC_HEIGHT, round(REC_HEIGHT * r))) for r in ratios
        ]
        batch_w = -(-max(widths) // 8) * 8
        batch = np.zeros((len(crops), 3, REC_HEIGHT, batch_w), np.float32)
        for i, (crop, width) in enumerate(zip(crops, widths, strict=True)):
            resized = cv2.resize(
                crop, (width, REC_HEIGHT), interpolation=cv2.INTER_CUBIC
            )
            batch[i, :, :, :width] = resized.transpose(2, 0, 1) / 127.5 - 1.0
        probs: np.ndarray = self._rec.run(None, {"x": batch})[0]
        return probs

    def _decode(
        self, name_probs: np.ndarray, id_probs: np.ndarray, locator: str, today: dt.date
    ) -> OcrRead:
        id_number, id_conf, valid = decode_id_number(
            _restrict(id_probs, self._id_cols), today
        )
        names = [
            ("".join(self._name_chars[k] for k in labels), share)
            for labels, share in _ctc_beam(_restrict(name_probs, self._name_cols))
        ]
        plausible = [(text, share) for text, share in names if len(text) >= 2]
        name, name_conf = (plausible or names or [("", 0.0)])[0]
        if not name:
            name_conf = 0.0
        return OcrRead(
            name=name,
            id_number=id_number,
            confidence=min(name_conf, id_conf),
            name_confidence=name_conf,
            id_confidence=id_conf,
            id_valid=bool(valid),
            name_candidates=tuple(names[:5]),
            id_candidates=valid[:5],
            locator=locator,
        )


def decode_id_number(
    probs: np.ndarray, today: dt.date
) -> tuple[str, float, tuple[tuple[str, float], ...]]:
    """Choose the ID number among the CTC beam's hypotheses by its check rules.

    Args:
        probs: per-frame probabilities, columns blank then ``ID_SYMBOLS``.
        today: date births may not be after.

    Returns:
        The best hypothesis that passes :func:`validate_resident_id`, its share
        of the beam, and every valid hypothesis with its share, best first;
        when none passes, the top hypothesis, 0.0 and no candidates.
    """
    beams = _ctc_beam(probs)
    valid: list[tuple[str, float]] = []
    for labels, share in beams:
        text = "".join(ID_SYMBOLS[k - 1] for k in labels)
        try:
            valid.append((validate_resident_id(text, today), share))
        except InvalidDocument:
            continue
    if valid:
        # TODO: the share is of the whole beam, invalid hypotheses included, so
        # a repaired number reads as unsure (e.g. 0.03) even when the check
        # character leaves one choice; calibrating it (a share among valid
        # reads, checked on real photos) would turn more UNREADABLE into MATCH.
        return valid[0][0], valid[0][1], tuple(valid)
    best = beams[0][0] if beams else ()
    return "".join(ID_SYMBOLS[k - 1] for k in best), 0.0, ()


def _frame(width: float, height: float) -> np.ndarray:
    """Corners of a width x height rectangle, clockwise from top-left."""
    return np.array(
        [[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32
    )


def _is_name_char(char: str) -> bool:
    if char == NAME_EXTRA:
        return True
    return len(char) == 1 and any(lo <= ord(char) <= hi for lo, hi in NAME_RANGES)


def _card_corners(image: np.ndarray) -> np.ndarray | None:
    """Corners (TL, TR, BR, BL) of the card's outline, or None when not found."""
    scale = min(1.0, 640 / max(image.shape[:2]))
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    gray = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (5, 5), 0)
    edges = cv2.dilate(cv2.Canny(gray, 30, 90), np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(edges, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    area = small.shape[0] * small.shape[1]
    best = None
    for contour in contours:
        _, (w, h), _ = rect = cv2.minAreaRect(contour)
        ratio = max(w, h) / max(min(w, h), 1.0)
        if (
            0.15 * area < w * h < 0.97 * area
            and 1.4 < ratio < 1.8
            and (best is None or w * h > best[1][0] * best[1][1])
        ):
            best = rect
    if best is None:
        return None
    box = cv2.boxPoints(best) / scale
    sums, diffs = box.sum(axis=1), box[:, 1] - box[:, 0]
    # Top-left has the least x+y, bottom-right the most; top-right the least y-x.
    points = box[[np.argmin(sums), np.argmin(diffs), np.argmax(sums), np.argmax(diffs)]]
    if np.linalg.norm(points[1] - points[0]) < np.linalg.norm(points[3] - points[0]):
        # TODO: a card photographed upright (portrait) is read sideways; turn
        # it by the side whose text the det model finds, or collectors must
        # photograph cards landscape.
        points = np.roll(points, -1, axis=0)
    corners: np.ndarray = points.astype(np.float32)
    return corners


def _ink_crop(card: np.ndarray, region: tuple[int, int, int, int, int]) -> np.ndarray:
    """A field's crop from a rectified card, tightened to its black ink.

    The card is rectified, so the text height is known: the crop is the band
    of that height holding the most ink, cut to the ink's run of columns.
    """
    x0, y0, x1, y1, text_h = region
    patch = card[y0:y1, x0:x1]
    bright = patch.max(axis=2).astype(np.float32)
    paper = cv2.blur(cv2.dilate(bright, np.ones((15, 15), np.uint8)), (15, 15))
    dark = 1.0 - bright / np.maximum(paper, 1.0)
    dark[dark < 1.0 - INK_RATIO] = 0.0
    window = np.convolve(dark.sum(axis=1), np.ones(text_h), mode="valid")
    top = int(np.argmax(window))
    cols = _main_run(dark[top : top + text_h].sum(axis=0) >= 1.0, gap=text_h)
    left, right = cols if cols is not None else (0, patch.shape[1])
    pad_y, pad_x = round(PAD_Y * text_h), round(PAD_X * text_h)
    return patch[
        max(0, top - pad_y) : top + text_h + pad_y, max(0, left - pad_x) : right + pad_x
    ]


def _main_run(mask: np.ndarray, gap: int) -> tuple[int, int] | None:
    """Start and end of the longest span of true values, bridging short gaps."""
    hits = np.flatnonzero(mask)
    if hits.size == 0:
        return None
    breaks = np.flatnonzero(np.diff(hits) > gap)
    starts = np.concatenate(([hits[0]], hits[breaks + 1]))
    ends = np.concatenate((hits[breaks], [hits[-1]])) + 1
    best = int(np.argmax(ends - starts))
    return int(starts[best]), int(ends[best])


def _restrict(probs: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Per-frame probabilities over one field's alphabet, renormalised.

    Runs of frames that are surely blank collapse to one exact blank frame:
    that keeps repeated characters apart and spares the decoder the padding.
    """
    blank = probs[:, 0] >= 1.0 - MIN_SYMBOL_P
    keep = ~blank | ~np.concatenate(([False], blank[:-1]))
    sub = probs[keep][:, cols].astype(np.float64)
    sub[blank[keep]] = np.eye(1, len(cols))[0]
    normalised: np.ndarray = sub / np.maximum(sub.sum(axis=1, keepdims=True), 1e-12)
    return normalised


def _ctc_beam(probs: np.ndarray) -> list[tuple[tuple[int, ...], float]]:
    """CTC prefix beam search; column 0 is blank.

    Returns:
        Label sequences with their share of the kept beam's probability, best
        first.
    """
    top = np.argpartition(probs[:, 1:], -TOP_PER_FRAME, axis=1)[:, -TOP_PER_FRAME:] + 1
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (1.0, 0.0)}
    for t in range(probs.shape[0]):
        row = probs[t]
        symbols = [int(k) for k in top[t] if row[k] >= MIN_SYMBOL_P]
        grown: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [0.0, 0.0])
        for prefix, (p_blank, p_char) in beams.items():
            total = p_blank + p_char
            grown[prefix][0] += total * row[0]
            if prefix:
                grown[prefix][1] += p_char * row[prefix[-1]]
            for k in symbols:
                extended = grown[(*prefix, k)]
                extended[1] += (
                    p_blank * row[k] if prefix and prefix[-1] == k else (total * row[k])
                )
        kept = sorted(grown.items(), key=lambda item: -(item[1][0] + item[1][1]))
        kept = kept[:BEAM_WIDTH]
        norm = sum(pb + pc for _, (pb, pc) in kept) or 1.0
        beams = {prefix: (pb / norm, pc / norm) for prefix, (pb, pc) in kept}
    return [(prefix, pb + pc) for prefix, (pb, pc) in beams.items()]
