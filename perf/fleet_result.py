"""What one load process saw, per registration, and how it travels to the parent.

Arrays are aligned by capture order; the file is a pickle in the run's
directory, read back by :class:`perf.loadgen.LoadGenerator`.
"""

from __future__ import annotations

import pickle
import resource
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from perf.device import DeviceStream
from sieve.v1 import ingest_pb2

__all__ = ["STATUS_CODES", "FleetResult", "collect", "save"]

STATUS_CODES = {ingest_pb2.STORED: 1, ingest_pb2.DUPLICATE: 2, ingest_pb2.REJECTED: 3}
"""Final ack status -> the code kept per registration (0: no final ack)."""


@dataclass
class FleetResult:
    """What one load process sent and saw; arrays are aligned by send order."""

    worker: int
    ids: bytes
    """16 bytes per registration, in the order they were captured."""
    put_t: np.ndarray
    status: np.ndarray
    """0 no final ack, 1 STORED, 2 DUPLICATE, 3 REJECTED."""
    reason: np.ndarray
    ack_t: np.ndarray
    latency_ms: np.ndarray
    bad: np.ndarray
    num_retry_acks: int = 0
    num_heartbeats: int = 0
    num_offline_sessions: int = 0
    num_backlog_sent: int = 0
    num_streams_opened: int = 0
    stream_errors: Counter[str] = field(default_factory=Counter)
    fatal_errors: Counter[str] = field(default_factory=Counter)
    cpu_s: float = 0.0
    started_at: float = 0.0


def collect(
    *,
    worker: int,
    ids: Sequence[str],
    put_t: Sequence[float],
    bad: Sequence[bool],
    streams: Sequence[DeviceStream],
    started_at: float,
) -> FleetResult:
    """Line every stream's final acks up with the captured registrations.

    Args:
        worker: the load process's number.
        ids: registration ids in capture order (each once).
        put_t: when each was handed to its device (monotonic).
        bad: whether each was deliberately damaged.
        streams: every stream the process opened (a device that went
            offline and came back has several).
        started_at: the common start of the offering.
    """
    count = len(ids)
    position = {key: number for number, key in enumerate(ids)}
    status = np.zeros(count, dtype=np.uint8)
    reason = np.zeros(count, dtype=np.uint8)
    ack_t = np.full(count, np.nan)
    latency = np.full(count, np.nan)
    result = FleetResult(
        worker=worker,
        ids=b"".join(uuid.UUID(key).bytes for key in ids),
        put_t=np.asarray(put_t, dtype=np.float64),
        status=status,
        reason=reason,
        ack_t=ack_t,
        latency_ms=latency,
        bad=np.asarray(bad, dtype=bool),
        num_streams_opened=len(streams),
        started_at=started_at,
    )
    for stream in streams:
        report = stream.report
        result.num_retry_acks += report.num_retry_acks
        result.num_heartbeats += report.num_heartbeats
        result.stream_errors.update(report.stream_errors)
        # acks, ack_times and latencies_ms are appended together.
        for (key, ack), when, took in zip(
            report.acks.items(), report.ack_times, report.latencies_ms, strict=True
        ):
            index = position[key]
            status[index] = STATUS_CODES.get(ack.status, 0)
            reason[index] = ack.reason
            ack_t[index] = when
            latency[index] = took
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.cpu_s = usage.ru_utime + usage.ru_stime
    return result


def save(result: FleetResult, out_dir: Path) -> Path:
    """Write a result where the parent will look for it; return the path."""
    path = out_dir / f"fleet-{result.worker}.pickle"
    with path.open("wb") as handle:
        pickle.dump(result, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return path
