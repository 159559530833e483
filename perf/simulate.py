"""The city-round simulator: virtual collector devices over real gRPC.

Each device holds one stream open and registers a person every few seconds
(exponentially distributed), binding people to pooled tubes of ``pool_size``.
A configurable share of registrations is deliberately bad so rejection paths
carry load too.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from engine.auth import make_device_token
from engine.city import City
from engine.config import Settings
from perf.device import DeviceStream
from perf.people import PersonFactory
from perf.tube_supply import TubeSupply
from sieve.v1 import ingest_pb2

__all__ = ["LoadProfile", "SimulationResult", "Simulator"]


@dataclass(frozen=True, slots=True)
class LoadProfile:
    """How much load, from how many devices, for how long."""

    devices: int = 300
    person_interval_s: float = 5.0
    """Mean seconds between two people at one device (~5 s per ID card)."""
    seconds: float = 60.0
    pool_size: int = 10
    bad_share: float = 0.0
    round: int = 1
    seed: int = 1
    window: int = 1
    channels: int = 4
    """gRPC connections shared by the devices of this process."""


@dataclass
class SimulationResult:
    """What the devices sent and what they were told."""

    sent_ids: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    ack_times: list[float] = field(default_factory=list)
    num_retry_acks: int = 0
    stream_errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def acked(self) -> int:
        """Registrations with a final ack."""
        return sum(self.statuses.values())


class Simulator:
    """Plays ``profile.devices`` collector devices against one gateway.

    Args:
        profile: the load.
        city: where the devices and sites are.
        device_token_key: key the generated devices' tokens derive from.
        address: gateway ``host:port``.
        tubes: where tube codes come from; by default allocated in the store
            named by the ``SIEVE_*`` settings.
    """

    def __init__(
        self,
        profile: LoadProfile,
        city: City,
        device_token_key: bytes,
        address: str,
        tubes: TubeSupply | None = None,
    ) -> None:
        self.profile = profile
        self._city = city
        self._key = device_token_key
        self._address = address
        self._rng = random.Random(profile.seed)
        self._people = PersonFactory(profile.seed, city_districts=tuple(city.districts))
        self.result = SimulationResult()
        self.tubes = tubes or TubeSupply(Settings.from_env(), profile.pool_size)

    def pick_devices(self) -> list[tuple[str, str]]:
        """(device id, site id) pairs spread evenly over every site."""
        sites = list(self._city.sites)
        per_site = max(1, -(-self.profile.devices // len(sites)))
        chosen = []
        for index in range(per_site):
            for site in sites:
                device = f"{site}-D{index:04d}"
                if device not in self._city.revoked:
                    chosen.append((device, site))
        return chosen[: self.profile.devices]

    async def run(
        self, progress: Callable[[SimulationResult], None] | None = None
    ) -> SimulationResult:
        """Run the load for ``profile.seconds``, then wait for every final ack."""
        channels = [
            grpc.aio.insecure_channel(self._address)
            for _ in range(self.profile.channels)
        ]
        started = time.monotonic()
        try:
            devices = self.pick_devices()
            streams = [
                DeviceStream(
                    channels[i % len(channels)],
                    device,
                    make_device_token(self._key, device),
                    window=self.profile.window,
                )
                for i, (device, _) in enumerate(devices)
            ]
            runners = [asyncio.ensure_future(s.run()) for s in streams]
            producers = [
                asyncio.ensure_future(self._produce(stream, site, index))
                for index, (stream, (_, site)) in enumerate(
                    zip(streams, devices, strict=True)
                )
            ]
            watcher = asyncio.ensure_future(self._watch(streams, progress))
            await asyncio.gather(*producers)
            reports = await asyncio.gather(*runners)
            watcher.cancel()
        finally:
            for channel in channels:
                await channel.close()
            self.tubes.close()
        for report in reports:
            for ack in report.acks.values():
                self.result.statuses[ingest_pb2.AckStatus.Name(ack.status)] += 1
                if ack.status == ingest_pb2.REJECTED:
                    self.result.reasons[ingest_pb2.RejectReason.Name(ack.reason)] += 1
            self.result.latencies_ms.extend(report.latencies_ms)
            self.result.ack_times.extend(report.ack_times)
            self.result.num_retry_acks += report.num_retry_acks
            self.result.stream_errors.update(report.stream_errors)
        self.result.seconds = time.monotonic() - started
        return self.result

    async def _watch(
        self,
        streams: list[DeviceStream],
        progress: Callable[[SimulationResult], None] | None,
    ) -> None:
        while progress is not None:
            await asyncio.sleep(5)
            progress(self.result)

    async def _produce(self, stream: DeviceStream, site: str, index: int) -> None:
        rng = random.Random(self.profile.seed * 1_000_003 + index)
        end = time.monotonic() + self.profile.seconds
        in_tube, tube = 0, ""
        collector = f"C{index:06d}"
        # Stagger starts so devices do not fire in lockstep.
        await asyncio.sleep(rng.uniform(0, self.profile.person_interval_s))
        while time.monotonic() < end:
            if in_tube == 0:
                tube = await asyncio.to_thread(self.tubes.take, site)
            in_tube = (in_tube + 1) % self.profile.pool_size
            registration = self.make_registration(site, tube, collector, rng)
            self.result.sent_ids.append(registration.registration_id)
            stream.put(registration)
            await asyncio.sleep(rng.expovariate(1 / self.profile.person_interval_s))
        stream.close()

    def make_registration(
        self, site: str, tube: str, collector: str, rng: random.Random
    ) -> ingest_pb2.Registration:
        """One registration, deliberately bad with probability ``bad_share``."""
        person = self._people.person()
        registration = ingest_pb2.Registration(
            registration_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            round=self.profile.round,
            tube_barcode=tube,
            name=person.name,
            document_type=ingest_pb2.RESIDENT_ID_CARD,
            document_number=person.id_number,
            site_id=site,
            collector_id=collector,
            captured_at_ms=time.time_ns() // 1_000_000,
        )
        if rng.random() < self.profile.bad_share:
            damage = rng.randrange(3)
            if damage == 0:
                wrong = "0" if person.id_number[-1] != "0" else "1"
                registration.document_number = person.id_number[:-1] + wrong
            elif damage == 1:
                registration.name = "张3"
            else:
                registration.site_id = "999999-001"
        return registration
