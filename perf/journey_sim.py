"""A district's whole sample journey over real gRPC, with discrepancies on demand.

Printers allocate tubes (``<site>-P00``), collectors register residents ten to
a tube and seal each full tube (``<site>-Dnnnn``), transporters open boxes,
load about fifty tubes each and dispatch them to a lab (``<district>-Tnnn``),
and lab scanners receive every box and upload results (``<lab>-Lnn``). Each
kind of discrepancy can be injected, through the same API, on top of the
clean flow::

    python -m perf.journey_sim --district 120101 --people 2000 --positive 0 \\
        --inject all
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc

from engine.auth import make_device_token
from engine.barcodes import make_box_code, make_tube_code
from engine.discrepancies import Kind
from engine.journey_client import JourneyClient, UploadSummary, upload_results
from engine.results_csv import ResultRow, ResultValue
from perf.device import send_all
from perf.people import Person, PersonFactory
from sieve.v1 import ingest_pb2, journey_pb2

__all__ = ["JourneyOutcome", "JourneyPlan", "JourneySimulator"]

T = TypeVar("T")
NEVER_ALLOCATED_SERIAL = 9_999_999
"""A site serial no printer reaches in a simulation: a stranger's tube."""


@dataclass(frozen=True)
class JourneyPlan:
    """What to simulate in one district."""

    district: str
    sites: tuple[str, ...]
    people: int = 1_000
    round: int = 1
    capacity: int = 10
    collectors_per_site: int = 20
    tubes_per_box: int = 50
    lab: str = "LAB01"
    lab_scanners: int = 4
    positive: tuple[int, ...] = ()
    """Indexes (in allocation order) of tubes that test POSITIVE."""
    inject: frozenset[Kind] = frozenset()
    first_box: int = 1
    """Serial of the district's first box code used."""
    seed: int = 1
    concurrency: int = 32


@dataclass
class JourneyOutcome:
    """What was sent and what the gateway answered, step by step."""

    tubes: list[str] = field(default_factory=list)
    """Every filled tube, in allocation order."""
    people: dict[str, list[Person]] = field(default_factory=dict)
    """Who was registered into each tube."""
    positive: list[str] = field(default_factory=list)
    tested: list[str] = field(default_factory=list)
    boxes: list[str] = field(default_factory=list)
    injected: dict[str, list[str]] = field(default_factory=dict)
    """Kind -> tubes deliberately sent astray."""
    answers: Counter[str] = field(default_factory=Counter)
    """``<step>:<status>`` counts of every answer."""
    upload: UploadSummary = field(default_factory=UploadSummary)
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Plain figures for printing."""
        return {
            "tubes": len(self.tubes),
            "people": sum(len(p) for p in self.people.values()),
            "boxes": len(self.boxes),
            "tested": len(self.tested),
            "positive": self.positive,
            "injected": self.injected,
            "answers": dict(sorted(self.answers.items())),
            "upload": {
                "done": self.upload.done,
                "already_done": self.upload.already_done,
                "refused": dict(self.upload.refused),
            },
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
        }


class JourneySimulator:
    """Plays every device of one district's journey against one gateway.

    Args:
        plan: what to simulate.
        address: gateway ``host:port``.
        device_token_key: the key generated devices' tokens derive from.
    """

    def __init__(self, plan: JourneyPlan, address: str, device_token_key: bytes):
        self.plan = plan
        self._address = address
        self._key = device_token_key
        self._limit = asyncio.Semaphore(plan.concurrency)
        self.outcome = JourneyOutcome()

    async def run(self) -> JourneyOutcome:
        """The whole journey; returns what happened."""
        async with grpc.aio.insecure_channel(self._address) as channel:
            self._channel = channel
            by_site = await self._timed("allocate", self._allocate())
            await self._timed("register", self._register(by_site))
            sealed = await self._timed("seal", self._seal(by_site))
            trips = await self._timed("transport", self._transport(sealed))
            received = await self._timed("receive", self._receive(trips, by_site))
            await self._timed("results", self._results(received))
        return self.outcome

    async def _timed(self, name: str, work: Awaitable[T]) -> T:
        started = time.monotonic()
        result = await work
        self.outcome.seconds[name] = time.monotonic() - started
        return result

    def _client(self, device: str) -> JourneyClient:
        return JourneyClient(
            self._channel, device, make_device_token(self._key, device)
        )

    def _count(self, step: str, replies: Iterable[journey_pb2.StepReply]) -> None:
        for reply in replies:
            status = journey_pb2.StepStatus.Name(reply.status)
            if reply.status == journey_pb2.REFUSED:
                status += "/" + journey_pb2.StepReason.Name(reply.reason)
            self.outcome.answers[f"{step}:{status}"] += 1

    async def _gather(self, calls: Iterable[Callable[[], Awaitable[T]]]) -> list[T]:
        async def limited(call: Callable[[], Awaitable[T]]) -> T:
            async with self._limit:
                return await call()

        return list(await asyncio.gather(*(limited(c) for c in calls)))

    async def _allocate(self) -> dict[str, list[str]]:
        plan = self.plan
        share = -(-plan.people // len(plan.sites))
        by_site: dict[str, list[str]] = {}
        for site in plan.sites:
            needed = -(-share // plan.capacity) + 1  # one spare, never bound
            reply = await self._client(f"{site}-P00").allocate(needed, plan.capacity)
            self._count("allocate", [reply.reply])
            if reply.reply.status != journey_pb2.DONE:
                raise RuntimeError(f"allocation for {site} refused: {reply.reply}")
            by_site[site] = list(reply.codes)
        return by_site

    def _collector(self, site: str, tube_index: int) -> tuple[str, str]:
        number = tube_index % self.plan.collectors_per_site
        return f"{site}-D{number:04d}", f"C{site[-3:]}{number:04d}"

    async def _register(self, by_site: dict[str, list[str]]) -> None:
        plan = self.plan
        # Seeded per district: two districts' runs share no person or id.
        seed = plan.seed * 1_000_003 + int(plan.district)
        factory = PersonFactory(seed)
        rng = random.Random(seed)
        now_ms = time.time_ns() // 1_000_000
        per_device: dict[str, list[ingest_pb2.Registration]] = {}
        left = plan.people
        for site in plan.sites:
            share = min(left, -(-plan.people // len(plan.sites)))
            left -= share
            for index in range(share):
                tube = by_site[site][index // plan.capacity]
                device, collector = self._collector(site, index // plan.capacity)
                person = factory.person()
                self.outcome.people.setdefault(tube, []).append(person)
                per_device.setdefault(device, []).append(
                    ingest_pb2.Registration(
                        registration_id=str(
                            uuid.UUID(int=rng.getrandbits(128), version=4)
                        ),
                        round=plan.round,
                        tube_barcode=tube,
                        name=person.name,
                        document_type=ingest_pb2.RESIDENT_ID_CARD,
                        document_number=person.id_number,
                        site_id=site,
                        collector_id=collector,
                        captured_at_ms=now_ms,
                    )
                )
        self.outcome.tubes = list(self.outcome.people)
        reports = await asyncio.gather(
            *(
                send_all(
                    self._channel,
                    device,
                    make_device_token(self._key, device),
                    registrations,
                    window=8,
                )
                for device, registrations in per_device.items()
            )
        )
        for report in reports:
            for ack in report.acks.values():
                status = ingest_pb2.AckStatus.Name(ack.status)
                self.outcome.answers[f"register:{status}"] += 1

    async def _seal(self, by_site: dict[str, list[str]]) -> list[str]:
        tubes = list(self.outcome.tubes)
        if Kind.RECEIVED_NOT_SEALED in self.plan.inject:
            self.outcome.injected[Kind.RECEIVED_NOT_SEALED] = [tubes.pop()]
        now_ms = time.time_ns() // 1_000_000

        def seal(tube: str) -> Callable[[], Awaitable[journey_pb2.StepReply]]:
            site = tube_site(tube)
            device, collector = self._collector(site, by_site[site].index(tube))
            return lambda: self._client(device).seal(tube, collector, now_ms)

        replies = await self._gather(seal(t) for t in tubes)
        self._count("seal", replies)
        return [
            t
            for t, r in zip(tubes, replies, strict=True)
            if r.status == journey_pb2.DONE
        ]

    async def _transport(self, sealed: list[str]) -> list[tuple[str, list[str]]]:
        plan = self.plan
        tubes = list(sealed)
        if not tubes:
            raise RuntimeError(f"no tube was sealed: {dict(self.outcome.answers)}")
        stray: list[tuple[str, list[str]]] = []
        if Kind.SEALED_NOT_BOXED in plan.inject:
            self.outcome.injected[Kind.SEALED_NOT_BOXED] = [tubes.pop()]
        if Kind.BOXED_NOT_RECEIVED in plan.inject:
            lost = tubes.pop()
            self.outcome.injected[Kind.BOXED_NOT_RECEIVED] = [lost]
            stray.append(("", [lost]))
        per_box = plan.tubes_per_box
        if plan.inject & {Kind.RECEIVED_TWICE, Kind.BOX_EXTRA} and len(tubes) > 1:
            per_box = min(per_box, -(-len(tubes) // 2))  # two boxes at least
        loads = [("", tubes[i : i + per_box]) for i in range(0, len(tubes), per_box)]
        trips = [
            (make_box_code(plan.district, plan.first_box + n), part)
            for n, (_, part) in enumerate(loads + stray)
        ]
        self.outcome.boxes = [box for box, _ in trips]

        async def carry(index: int, box: str, part: list[str]) -> None:
            client = self._client(f"{plan.district}-T{index % 50:03d}")
            opened = await client.open_box(box, plan.round, tube_site(part[0]))
            loaded = await client.load(box, part)
            sent = await client.dispatch(box, f"VAN-{index:03d}", plan.lab)
            self._count("open", [opened])
            self._count("load", loaded.items)
            self._count("dispatch", [sent])

        await self._gather(
            functools.partial(carry, i, b, p) for i, (b, p) in enumerate(trips)
        )
        return trips[: len(loads)]

    async def _receive(
        self, trips: list[tuple[str, list[str]]], by_site: dict[str, list[str]]
    ) -> list[str]:
        plan = self.plan
        scans = [(box, list(part)) for box, part in trips]
        received = [tube for _, part in trips for tube in part]
        extra = scans[-1][1]
        if Kind.BOX_SHORT in plan.inject:
            short = scans[0][1].pop()
            received.remove(short)
            self.outcome.injected[Kind.BOX_SHORT] = [short]
        if Kind.RECEIVED_NOT_SEALED in plan.inject:
            extra.append(self.outcome.injected[Kind.RECEIVED_NOT_SEALED][0])
        if Kind.RECEIVED_UNKNOWN in plan.inject:
            stranger = make_tube_code(plan.sites[0], NEVER_ALLOCATED_SERIAL)
            spare = by_site[plan.sites[0]][-1]  # allocated, never bound
            extra += [stranger, spare]
            self.outcome.injected[Kind.RECEIVED_UNKNOWN] = [stranger, spare]
        if plan.inject & {Kind.RECEIVED_TWICE, Kind.BOX_EXTRA} and len(scans) > 1:
            again = scans[0][1][0]
            extra.append(again)
            self.outcome.injected[Kind.RECEIVED_TWICE] = [again]
            self.outcome.injected[Kind.BOX_EXTRA] = [again]

        async def scan(index: int, box: str, part: list[str]) -> None:
            client = self._client(f"{plan.lab}-L{index % plan.lab_scanners:02d}")
            reply = await client.receive(box, part)
            self._count("receive_box", [reply.reply])
            self._count("receive", reply.items)

        await self._gather(
            functools.partial(scan, i, b, p) for i, (b, p) in enumerate(scans)
        )
        return received

    async def _results(self, received: list[str]) -> None:
        plan = self.plan
        positive = {self.outcome.tubes[i] for i in plan.positive}
        now_ms = time.time_ns() // 1_000_000
        rows = [
            ResultRow(
                0,
                tube,
                ResultValue.POSITIVE if tube in positive else ResultValue.NEGATIVE,
                now_ms,
            )
            for tube in received
        ]
        self.outcome.positive = sorted(positive & set(received))
        self.outcome.tested = list(received)
        parts = _split(rows, plan.lab_scanners)
        summaries = await asyncio.gather(
            *(
                upload_results(self._client(f"{plan.lab}-L{n:02d}"), part)
                for n, part in enumerate(parts)
            )
        )
        total = self.outcome.upload
        for summary in summaries:
            total.done += summary.done
            total.already_done += summary.already_done
            total.refused.update(summary.refused)
            total.refused_tubes += summary.refused_tubes
            total.not_answered += summary.not_answered


def tube_site(tube: str) -> str:
    """The site id a tube code was printed for."""
    return f"{tube[1:7]}-{tube[7:10]}"


def _split(items: Sequence[T], parts: int) -> list[list[T]]:
    return [list(items[n::parts]) for n in range(parts) if items[n::parts]]


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m perf.journey_sim``: one district's journey, summary as JSON."""
    from engine.city import load_city
    from engine.config import Settings
    from engine.logs import configure_logging
    from engine.pii import Keyring

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--district", required=True)
    parser.add_argument("--people", type=int, default=1_000)
    parser.add_argument("--round", type=int, default=1)
    parser.add_argument("--sites", type=int, default=1, help="sites of the district")
    parser.add_argument("--collectors-per-site", type=int, default=20)
    parser.add_argument("--positive", type=int, nargs="*", default=[])
    parser.add_argument("--first-box", type=int, default=1)
    parser.add_argument(
        "--inject",
        nargs="*",
        default=[],
        help="discrepancy kinds to inject, or 'all': " + " ".join(Kind),
    )
    parser.add_argument("--gateway", default=None, help="host:port")
    args = parser.parse_args(argv)

    configure_logging("WARNING")
    settings = Settings.from_env()
    city = load_city(settings.city_config)
    sites = sorted(
        s for s, site in city.sites.items() if site.district == args.district
    )
    if not sites:
        parser.error(f"no sites in district {args.district}")
    inject = (
        frozenset(Kind)
        if args.inject == ["all"]
        else frozenset(Kind(name) for name in args.inject)
    )
    plan = JourneyPlan(
        district=args.district,
        sites=tuple(sites[: args.sites]),
        people=args.people,
        round=args.round,
        collectors_per_site=args.collectors_per_site,
        positive=tuple(args.positive),
        inject=inject,
        first_box=args.first_box,
    )
    simulator = JourneySimulator(
        plan,
        args.gateway or settings.gateway_address,
        Keyring.load(settings.keys_file).device_token,
    )
    outcome = asyncio.run(simulator.run())
    print(json.dumps(outcome.summary(), ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
