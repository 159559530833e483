"""CPU seconds spent by each role of a bench run (engine parts, load, machine)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psutil

__all__ = ["CpuMeter", "descendants", "machine_busy_s"]

PidSource = Callable[[], Iterable[int]]


def machine_busy_s() -> float:
    """CPU seconds this machine's cores have spent busy since boot, all users.

    Idle, I/O wait and steal are not busy: steal is time the hypervisor gave
    to someone else's machine.
    """
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0) + getattr(times, "steal", 0.0)
    total = sum(times)
    # guest time is already counted in user time on Linux.
    total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    return float(total - idle)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (not ``pid`` itself); empty if it is gone."""
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


@dataclass
class _Tracked:
    process: psutil.Process
    base_s: float
    last_s: float


@dataclass
class CpuMeter:
    """Counts CPU seconds per role from :meth:`start`, by polling psutil.

    Each role names a function returning its current pids; it is called on
    every :meth:`read`, so processes that appear later (Ray workers) are
    counted from their birth. A process that has ended keeps the last value
    read, so read often (every second) for exact figures. A pid claimed by an
    earlier role is not counted again by a later one.
    """

    roles: dict[str, PidSource] = field(default_factory=dict)
    _tracked: dict[int, _Tracked] = field(default_factory=dict)
    _owner: dict[int, str] = field(default_factory=dict)
    _machine_base_s: float = 0.0
    _started: bool = False

    def add_role(self, name: str, pids: PidSource) -> None:
        """Count the processes ``pids()`` returns under ``name``."""
        self.roles[name] = pids

    def start(self) -> None:
        """Take the baseline: CPU used before now does not count."""
        self._tracked.clear()
        self._owner.clear()
        self._machine_base_s = machine_busy_s()
        self._started = True
        self._poll(baseline=True)

    def _poll(self, *, baseline: bool = False) -> None:
        for role, source in self.roles.items():
            for pid in source():
                owner = self._owner.setdefault(pid, role)
                if owner != role:
                    continue
                tracked = self._tracked.get(pid)
                try:
                    if tracked is None:
                        process = psutil.Process(pid)
                        now_s = _cpu_s(process)
                        base_s = now_s if baseline else 0.0
                        self._tracked[pid] = _Tracked(process, base_s, now_s)
                    else:
                        tracked.last_s = _cpu_s(tracked.process)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue

    def read(self) -> dict[str, float]:
        """CPU seconds per role since :meth:`start`, plus ``machine`` (all users)."""
        if not self._started:
            raise RuntimeError("CpuMeter.read before start")
        self._poll()
        totals = dict.fromkeys(self.roles, 0.0)
        for pid, tracked in self._tracked.items():
            totals[self._owner[pid]] += max(tracked.last_s - tracked.base_s, 0.0)
        totals["machine"] = machine_busy_s() - self._machine_base_s
        return totals

    @staticmethod
    def cores() -> int:
        """Cores this machine has (for shares of the whole)."""
        return os.cpu_count() or 1
