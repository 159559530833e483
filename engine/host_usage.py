"""How busy one machine is: CPU, memory, network and, where present, GPUs.

:class:`HostUsageSampler` reads psutil (and NVML through ``pynvml`` when an
NVIDIA driver is there) and turns counters into rates between two calls. A
machine without a GPU reports ``gpus=None``; nothing is ever made up.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import psutil

__all__ = ["SUSTAINED_S", "GpuUsage", "HostUsage", "HostUsageSampler", "read_gpus"]

SUSTAINED_S = 60.0
"""Window of the sustained CPU mean: a minute tells load from a spike."""


@dataclass(frozen=True, slots=True)
class GpuUsage:
    """One GPU as NVML reports it."""

    index: int
    name: str
    utilization_percent: float
    memory_used_bytes: int
    memory_total_bytes: int


@dataclass(frozen=True, slots=True)
class HostUsage:
    """One reading of a machine."""

    hostname: str
    taken_at_s: float
    cpu_percent: float
    cpu_per_core: tuple[float, ...]
    cpu_sustained_percent: float
    """Mean CPU over the samples of the last ``SUSTAINED_S`` seconds."""
    memory_percent: float
    memory_used_bytes: int
    memory_total_bytes: int
    net_sent_bytes_per_s: float
    net_recv_bytes_per_s: float
    net_link_bytes_per_s: float | None
    """Sum of the up interfaces' link speeds (loopback excluded); None when
    the system does not say."""
    gpus: tuple[GpuUsage, ...] | None
    """None: no NVIDIA GPU or driver on this machine."""

    @property
    def net_percent(self) -> float | None:
        """Busier direction's share of the link speed, or None if unknown."""
        if not self.net_link_bytes_per_s:
            return None
        busier = max(self.net_sent_bytes_per_s, self.net_recv_bytes_per_s)
        return 100.0 * busier / self.net_link_bytes_per_s


def read_gpus() -> tuple[GpuUsage, ...] | None:
    """Every NVIDIA GPU's utilisation and memory, or None without NVML."""
    try:
        import pynvml
    except ImportError:  # pragma: no cover - nvidia-ml-py is a dependency
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            rates: Any = pynvml.nvmlDeviceGetUtilizationRates(handle)
            memory: Any = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            gpus.append(
                GpuUsage(
                    index=index,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    utilization_percent=float(rates.gpu),
                    memory_used_bytes=int(memory.used),
                    memory_total_bytes=int(memory.total),
                )
            )
        return tuple(gpus)
    finally:
        pynvml.nvmlShutdown()


class HostUsageSampler:
    """Samples this machine; CPU and network are rates since the last call."""

    def __init__(self) -> None:
        psutil.cpu_percent(percpu=True)  # the first call primes the counters
        self._net = psutil.net_io_counters()
        self._net_at = time.monotonic()
        self._cpu_history: deque[tuple[float, float]] = deque()

    def sample(self) -> HostUsage:
        """One reading; the first covers the time since construction."""
        per_core = tuple(psutil.cpu_percent(percpu=True))
        memory = psutil.virtual_memory()
        net = psutil.net_io_counters()
        now = time.monotonic()
        elapsed_s = max(now - self._net_at, 1e-3)
        sent = (net.bytes_sent - self._net.bytes_sent) / elapsed_s
        recv = (net.bytes_recv - self._net.bytes_recv) / elapsed_s
        self._net, self._net_at = net, now
        cpu = sum(per_core) / len(per_core) if per_core else 0.0
        self._cpu_history.append((now, cpu))
        while self._cpu_history[0][0] < now - SUSTAINED_S:
            self._cpu_history.popleft()
        return HostUsage(
            hostname=socket.gethostname(),
            taken_at_s=time.time(),
            cpu_percent=cpu,
            cpu_per_core=per_core,
            cpu_sustained_percent=sum(v for _, v in self._cpu_history)
            / len(self._cpu_history),
            memory_percent=memory.percent,
            memory_used_bytes=memory.total - memory.available,
            memory_total_bytes=memory.total,
            net_sent_bytes_per_s=max(sent, 0.0),
            net_recv_bytes_per_s=max(recv, 0.0),
            net_link_bytes_per_s=_link_bytes_per_s(),
            gpus=read_gpus(),
        )


def _link_bytes_per_s() -> float | None:
    total_mbit = sum(
        stats.speed
        for name, stats in psutil.net_if_stats().items()
        if stats.isup and stats.speed > 0 and not name.startswith("lo")
    )
    return total_mbit * 1_000_000 / 8 if total_mbit else None
