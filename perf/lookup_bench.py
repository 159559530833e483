"""Look-up latency while ingest runs: ``python -m perf.lookup_bench``.

Starts the engine in its own process on a fresh keyspace, stores a set of
registrations through one device, then runs ``sieve simulate`` (steady
collector load over real gRPC) in a child process while this process sends
Residents.Lookup calls at a fixed rate, half for numbers it stored and half
for numbers never sampled. Client-side latency of each call (gRPC included)
is recorded; p50/p99/max, errors and the ingest rate achieved are printed and
written to ``var/bench/lookup_<time>/result.json``. Targets are goals, never
asserted: p99 <= 10 ms at full ingest.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import grpc

from engine.auth import make_device_token
from engine.config import REPO_ROOT, Settings
from engine.logs import configure_logging
from engine.lookup_clients import CLIENT_HEADER, make_client_token
from engine.pii import Keyring
from perf.bench import _machine, free_port
from perf.device import send_all
from perf.engine_proc import EngineProcess
from perf.people import PersonFactory
from perf.tube_supply import TubeSupply
from sieve.v1 import ingest_pb2, residents_pb2, residents_pb2_grpc

__all__ = ["main"]

SITE = "120101-001"
DEVICE = f"{SITE}-D0001"
CLIENT = "resident-app"
TARGET_P99_MS = 10.0


def _seed(settings: Settings, address: str, count: int) -> list[str]:
    people = PersonFactory(4_040)
    tubes = TubeSupply(settings, 10)
    now_ms = time.time_ns() // 1_000_000
    regs = []
    try:
        for _ in range(count):
            person = people.person()
            regs.append(
                ingest_pb2.Registration(
                    registration_id=str(uuid.uuid4()),
                    round=1,
                    tube_barcode=tubes.take(SITE),
                    name=person.name,
                    document_type=ingest_pb2.RESIDENT_ID_CARD,
                    document_number=person.id_number,
                    site_id=SITE,
                    collector_id="C000001",
                    captured_at_ms=now_ms,
                )
            )
    finally:
        tubes.close()
    token = make_device_token(Keyring.load(settings.keys_file).device_token, DEVICE)

    async def send() -> list[str]:
        async with grpc.aio.insecure_channel(address) as channel:
            report = await send_all(channel, DEVICE, token, regs, window=16)
        return [
            r.document_number
            for r in regs
            if report.acks[r.registration_id].status == ingest_pb2.STORED
        ]

    return asyncio.run(send())


async def _lookups(
    address: str, token: str, numbers: list[str], rate_per_s: float, seconds: float
) -> dict[str, Any]:
    strangers = PersonFactory(9_090)
    rng = random.Random(7)
    latencies_ms: list[float] = []
    errors: dict[str, int] = {}
    found = 0
    metadata = ((CLIENT_HEADER, CLIENT), ("authorization", f"Bearer {token}"))
    async with grpc.aio.insecure_channel(address) as channel:
        make_stub = residents_pb2_grpc.ResidentsStub
        stub = make_stub(channel)  # type: ignore[no-untyped-call]

        async def one(number: str) -> None:
            nonlocal found
            started = time.perf_counter()
            try:
                reply = await stub.Lookup(
                    residents_pb2.LookupRequest(
                        document_type=ingest_pb2.RESIDENT_ID_CARD,
                        document_number=number,
                    ),
                    metadata=metadata,
                    timeout=5,
                )
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                return
            latencies_ms.append((time.perf_counter() - started) * 1000)
            found += reply.found

        tasks = []
        start = time.perf_counter()
        sent = 0
        while time.perf_counter() - start < seconds:
            due = start + sent / rate_per_s
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            number = (
                rng.choice(numbers) if rng.random() < 0.5 else strangers.id_number()
            )
            tasks.append(asyncio.ensure_future(one(number)))
            sent += 1
        await asyncio.gather(*tasks)
    ordered = sorted(latencies_ms)

    def pct(share: float) -> float | None:
        if not ordered:
            return None
        return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 2)

    return {
        "lookups": len(ordered),
        "errors": errors,
        "found": found,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(ordered[-1], 2) if ordered else None,
        "mean_ms": round(statistics.fmean(ordered), 2) if ordered else None,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and return its figures."""
    parser = argparse.ArgumentParser(prog="python -m perf.lookup_bench")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--ingest-rate", type=float, default=3_700.0)
    parser.add_argument("--interval-s", type=float, default=5.0)
    parser.add_argument("--lookups-per-s", type=float, default=50.0)
    parser.add_argument("--seed-count", type=int, default=300)
    parser.add_argument("--hosts", type=int, default=2)
    args = parser.parse_args(argv)
    configure_logging("WARNING")

    stamp = dt.datetime.now().strftime("%Y%m%d_%H%M%S")
    run_dir = REPO_ROOT / "var" / "bench" / f"lookup_{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    keyspace = f"bench_lookup_{stamp}"
    os.environ["SIEVE_LOOKUP_RATE_PER_S"] = str(args.lookups_per_s * 10)
    os.environ["SIEVE_LOOKUP_BURST"] = str(int(args.lookups_per_s * 10))
    settings = Settings.from_env(cql_keyspace=keyspace)
    keyring = Keyring.load(settings.keys_file, create=True)
    engine = EngineProcess(keyspace, free_port(), args.hosts, run_dir)
    info = engine.start()
    try:
        numbers = _seed(settings, info.address, args.seed_count)
        devices = int(args.ingest_rate * args.interval_s)
        env = {
            **os.environ,
            "SIEVE_CQL_KEYSPACE": keyspace,
            "SIEVE_GATEWAY_PORT": info.address.rsplit(":", 1)[1],
        }
        log = (run_dir / "ingest.log").open("wb")
        load = subprocess.Popen(
            [sys.executable, "-m", "engine", "simulate", "--devices", str(devices),
             "--interval-s", str(args.interval_s), "--seconds", str(args.seconds + 10),
             "--json", str(run_dir / "ingest.json")],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        time.sleep(10)  # let the devices connect and the load reach its rate
        token = make_client_token(keyring.device_token, CLIENT)
        figures = asyncio.run(
            _lookups(info.address, token, numbers, args.lookups_per_s, args.seconds)
        )
        load.wait(timeout=args.seconds + 300)
    finally:
        engine.stop()
    ingest_file = run_dir / "ingest.json"
    ingest: dict[str, Any] = {"acked": 0, "seconds": 1.0, "failed": True}
    if ingest_file.exists():
        ingest = json.loads(ingest_file.read_text())
    else:
        print(f"the ingest load failed; see {run_dir / 'ingest.log'}")
    figures.update(
        {
            "seeded": len(numbers),
            "ingest": ingest,
            "ingest_acked_per_s": round(ingest["acked"] / ingest["seconds"], 1),
            "target_p99_ms": TARGET_P99_MS,
            "meta": {
                "command": "python -m perf.lookup_bench "
                + " ".join(argv or sys.argv[1:]),
                "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                "machine": _machine(),
                "keyspace": keyspace,
                "run_dir": str(run_dir),
            },
        }
    )
    (run_dir / "result.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps({k: v for k, v in figures.items() if k != "meta"}, indent=2))
    print(f"figures: {run_dir}/result.json")
    return figures


if __name__ == "__main__":
    main()
