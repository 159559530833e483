"""Profiles of engine processes during a run: py-spy recordings and their summary.

``py-spy record --format raw`` writes collapsed stacks (``a;b;c count``);
:func:`summarize_collapsed` turns them into the share of samples in which
each function was on the stack (inclusive) or on top (self), which is what
RESULTS.md quotes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import structlog

__all__ = ["ProfileSummary", "PySpy", "frame_name", "summarize_collapsed"]

log = structlog.get_logger()


def frame_name(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``func (file.py)``; other text unchanged."""
    name, sep, where = frame.partition(" (")
    if not sep:
        return frame.strip()
    file_name = where.rstrip(")").rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return f"{name} ({file_name})"


@dataclass(frozen=True, slots=True)
class ProfileSummary:
    """Top functions of one recording, as shares (0-1) of all samples."""

    samples: int
    inclusive: list[tuple[str, float]]
    self_time: list[tuple[str, float]]


def summarize_collapsed(lines: list[str], top: int = 25) -> ProfileSummary:
    """Inclusive and self shares per function from collapsed stack lines.

    A function appearing twice in one stack (recursion) counts once for that
    stack's inclusive share.
    """
    inclusive: Counter[str] = Counter()
    on_top: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [frame_name(frame) for frame in stack.split(";")]
        for name in set(frames):
            inclusive[name] += count
        on_top[frames[-1]] += count
    if not total:
        return ProfileSummary(0, [], [])
    return ProfileSummary(
        samples=total,
        inclusive=[(k, v / total) for k, v in inclusive.most_common(top)],
        self_time=[(k, v / total) for k, v in on_top.most_common(top)],
    )


def _py_spy() -> str:
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise RuntimeError("py-spy is not installed (pip install py-spy==0.4.3)")
    return found


class PySpy:
    """Records one process with py-spy for a fixed time, in the background.

    Args:
        pid: process to sample.
        out: collapsed-stack output file.
        seconds: recording length.
        rate_hz: samples per second.
    """

    def __init__(self, pid: int, out: Path, seconds: float, rate_hz: int = 50) -> None:
        self.pid = pid
        self.out = out
        self._command = [
            _py_spy(),
            "record",
            f"--pid={pid}",
            f"--duration={max(1, int(seconds))}",
            f"--rate={rate_hz}",
            "--format=raw",
            "--nonblocking",
            f"--output={out}",
        ]
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Begin recording."""
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            self._command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        log.info("profile_started", pid=self.pid, out=str(self.out))

    def wait(self, timeout_s: float = 60.0) -> ProfileSummary | None:
        """Wait for the recording to end; its summary, or None if it failed."""
        if self._process is None:
            return None
        try:
            _, err = self._process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(5)
            return None
        if not self.out.exists():
            log.warning("profile_failed", pid=self.pid, error=err.decode()[-500:])
            return None
        return summarize_collapsed(self.out.read_text().splitlines())

    def dump(self) -> str:
        """One ``py-spy dump`` of the process's threads right now."""
        result = subprocess.run(
            [_py_spy(), "dump", f"--pid={self.pid}", "--nonblocking"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        return result.stdout or result.stderr
