"""OCR benchmark: field accuracy on generated noisy cards and throughput by batch size.

Run from the repository root (nice it: it keeps every core busy)::

    nice -n 10 .venv/bin/python -m perf.ocr_bench --cards 1000 --json var/ocr_bench.json

Accuracy is exact match of the whole field against the card's ground truth,
over ``--cards`` cards from :class:`~perf.cards.CardFactory` at ``--severity``.
Speed is measured separately on ``--speed-images`` of those photos, read in
batches of each ``--batch-sizes`` value after one warm-up batch; crops/s counts
the two field crops each photo gives the rec model.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click
import onnxruntime as ort

from engine.logs import configure_logging
from engine.ocr_reader import CardReader, OcrRead
from engine.ocr_verdict import judge
from perf.cards import CardFactory, GeneratedCard, id_font_name

__all__ = ["AccuracyResult", "SpeedResult", "measure_accuracy", "measure_speed"]


@dataclass(slots=True)
class AccuracyResult:
    """Exact-match counts over a generated set."""

    cards: int
    id_exact: int = 0
    name_exact: int = 0
    both_exact: int = 0
    id_valid_reads: int = 0
    id_wrong_but_confident: int = 0
    locators: dict[str, int] = field(default_factory=dict)
    honest: dict[str, int] = field(default_factory=dict)
    altered_id: dict[str, int] = field(default_factory=dict)
    altered_name: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def rate(self, count: int) -> float:
        """Share of cards, in percent."""
        return 100.0 * count / max(self.cards, 1)


@dataclass(frozen=True, slots=True)
class SpeedResult:
    """Throughput at one batch size."""

    batch_size: int
    images: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        """Photos read per second."""
        return self.images / self.seconds

    @property
    def crops_per_s(self) -> float:
        """Field crops recognised per second (two per photo)."""
        return 2 * self.images / self.seconds


def measure_accuracy(
    reader: CardReader,
    cards: list[GeneratedCard],
    batch: int = 32,
    confident: float = 0.9,
) -> AccuracyResult:
    """Read every card and count exact matches.

    Args:
        reader: the reader under test.
        cards: generated cards with ground truth.
        batch: photos per read_batch call.
        confident: id confidence at or above which a wrong read counts as a
            confident error (the dangerous kind: it would flag an honest record).

    Returns:
        The counts.
    """
    result = AccuracyResult(cards=len(cards))
    started = time.perf_counter()
    for start in range(0, len(cards), batch):
        chunk = cards[start : start + batch]
        reads = reader.read_batch([card.jpeg for card in chunk])
        for card, read in zip(chunk, reads, strict=True):
            _count(result, card, read, confident)
    result.seconds = time.perf_counter() - started
    return result


def _count(
    result: AccuracyResult, card: GeneratedCard, read: OcrRead, confident: float
) -> None:
    id_ok = read.id_number == card.truth.id_number
    name_ok = read.name == card.truth.name
    result.id_exact += id_ok
    result.name_exact += name_ok
    result.both_exact += id_ok and name_ok
    result.id_valid_reads += read.id_valid
    result.id_wrong_but_confident += (not id_ok) and read.id_confidence >= confident
    result.locators[read.locator] = result.locators.get(read.locator, 0) + 1
    truth = card.truth
    # The three claims a phone could send for this card: as printed, with one
    # digit of the number changed, and with the surname swapped.
    digit = "7" if truth.id_number[11] != "7" else "2"
    forged_id = truth.id_number[:11] + digit + truth.id_number[12:]
    forged_name = ("欧" if truth.name[0] != "欧" else "周") + truth.name[1:]
    for tally, name, number in (
        (result.honest, truth.name, truth.id_number),
        (result.altered_id, truth.name, forged_id),
        (result.altered_name, forged_name, truth.id_number),
    ):
        verdict = judge(read, name, number).verdict.value
        tally[verdict] = tally.get(verdict, 0) + 1


def measure_speed(
    reader: CardReader, photos: list[bytes], batch_size: int
) -> SpeedResult:
    """Time reading ``photos`` in batches of ``batch_size`` after a warm-up batch."""
    reader.read_batch(photos[:batch_size])
    started = time.perf_counter()
    for start in range(0, len(photos), batch_size):
        reader.read_batch(photos[start : start + batch_size])
    return SpeedResult(batch_size, len(photos), time.perf_counter() - started)


@click.command()
@click.option(
    "--cards",
    "num_cards",
    default=1000,
    show_default=True,
    help="Generated cards for the accuracy run.",
)
@click.option(
    "--severity",
    default=1.0,
    show_default=True,
    help="Damage level of the generated photos, 0..1.",
)
@click.option("--seed", default=2026, show_default=True)
@click.option("--batch-sizes", default="1,8,32,64", show_default=True)
@click.option(
    "--speed-images",
    default=128,
    show_default=True,
    help="Photos timed at each batch size.",
)
@click.option(
    "--threads",
    type=int,
    default=None,
    help="onnxruntime intra-op threads (default: one per core).",
)
@click.option(
    "--provider",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the results here.",
)
def main(
    num_cards: int,
    severity: float,
    seed: int,
    batch_sizes: str,
    speed_images: int,
    threads: int | None,
    provider: str,
    json_path: Path | None,
) -> None:
    """Measure OCR accuracy and throughput and print a table."""
    configure_logging("WARNING")
    providers = {
        "auto": None,
        "cpu": ["CPUExecutionProvider"],
        "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    }[provider]
    reader = CardReader(threads=threads, providers=providers)
    made = time.perf_counter()
    count = max(num_cards, speed_images)
    cards = CardFactory(seed, severity=severity).cards(count)
    gen_s = time.perf_counter() - made
    accuracy = measure_accuracy(reader, cards[:num_cards])
    photos = [card.jpeg for card in cards[:speed_images]]
    sizes = [int(size) for size in batch_sizes.split(",")]
    speeds = [measure_speed(reader, photos, size) for size in sizes]
    _print_table(reader, accuracy, speeds, severity, gen_s)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "provider": reader.provider,
            "machine": platform.processor() or platform.machine(),
            "onnxruntime": ort.__version__,
            "severity": severity,
            "seed": seed,
            "id_font": id_font_name(),
            "accuracy": asdict(accuracy),
            "speed": [
                asdict(s)
                | {"images_per_s": s.images_per_s, "crops_per_s": s.crops_per_s}
                for s in speeds
            ],
        }
        json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def _print_table(
    reader: CardReader,
    accuracy: AccuracyResult,
    speeds: list[SpeedResult],
    severity: float,
    gen_s: float,
) -> None:
    a = accuracy
    click.echo(
        f"provider={reader.provider} onnxruntime={ort.__version__} "
        f"id_font={id_font_name()!r} severity={severity} "
        f"generation_s={gen_s:.1f}"
    )
    click.echo(f"accuracy over {a.cards} cards ({a.seconds:.1f} s):")
    click.echo(f"  id_number exact   {a.id_exact:6d}  {a.rate(a.id_exact):6.2f} %")
    click.echo(f"  name exact        {a.name_exact:6d}  {a.rate(a.name_exact):6.2f} %")
    click.echo(f"  both exact        {a.both_exact:6d}  {a.rate(a.both_exact):6.2f} %")
    click.echo(
        f"  id reads valid    {a.id_valid_reads:6d}  {a.rate(a.id_valid_reads):6.2f} %"
    )
    click.echo(f"  id wrong, conf>=0.9 {a.id_wrong_but_confident:4d}")
    click.echo(f"  card found by     {a.locators}")
    click.echo(f"verdicts, honest claims:        {a.honest}")
    click.echo(f"verdicts, one ID digit changed: {a.altered_id}")
    click.echo(f"verdicts, surname changed:      {a.altered_name}")
    base = speeds[0].images_per_s if speeds else 1.0
    click.echo("batch  images  seconds  images/s  crops/s  gain_vs_first")
    for s in speeds:
        click.echo(
            f"{s.batch_size:5d}  {s.images:6d}  {s.seconds:7.2f}  "
            f"{s.images_per_s:8.1f}  {s.crops_per_s:7.1f}  "
            f"{s.images_per_s / base:12.2f}x"
        )


if __name__ == "__main__":
    main()
