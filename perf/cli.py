"""The ``sieve bench`` group (steady, burst, connections, soak) and ``sieve plan``.

Register both in the main CLI with ``main.add_command(bench)`` and
``main.add_command(plan)``; until then run them as
``python -c "from perf.cli import bench; bench()" steady --seconds 20``.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from perf.scenarios import Scenario

__all__ = ["bench", "plan"]


def _common(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--json",
            "json_path",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Also write the figures here (always under var/bench/RUN/).",
        ),
        click.option("--procs", default=2, show_default=True, help="Load processes."),
        click.option(
            "--hosts", default=2, show_default=True, help="Shard host actors."
        ),
        click.option(
            "--ceilings/--no-ceilings",
            default=True,
            show_default=True,
            help="Measure the gRPC and store ceilings after the run.",
        ),
        click.option("--ceiling-seconds", default=10.0, show_default=True),
        click.option(
            "--verify/--no-verify",
            default=True,
            show_default=True,
            help="Scan the store for lost and duplicated registrations.",
        ),
        click.option(
            "--progress-s",
            default=5.0,
            show_default=True,
            help="Seconds between progress lines (0: none).",
        ),
        click.option(
            "--drain-s",
            type=float,
            help="Longest wait for final acks after the offering (default 60).",
        ),
        click.option(
            "--profile-s",
            default=0.0,
            show_default=True,
            help="py-spy the gateway and a shard host this long (0: no).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _run(scenario: Scenario, **kwargs: Any) -> None:
    from engine.logs import configure_logging
    from perf.bench import BenchOptions, run_bench
    from perf.report import summary_text

    configure_logging("WARNING")
    if kwargs.get("drain_s") is not None:
        scenario = dataclasses.replace(scenario, drain_s=kwargs["drain_s"])
    options = BenchOptions(
        procs=kwargs["procs"],
        hosts=kwargs["hosts"],
        ceilings=kwargs["ceilings"],
        ceiling_seconds=kwargs["ceiling_seconds"],
        verify=kwargs["verify"],
        progress_s=kwargs["progress_s"],
        profile_s=kwargs["profile_s"],
        json_path=kwargs["json_path"],
        command=_command_line(),
    )
    click.echo(
        f"bench {scenario.name}: {scenario.devices:,} devices "
        f"({scenario.active:,} active), {scenario.seconds:g} s, "
        f"~{scenario.offered:,.0f} registrations offered",
        err=True,
    )
    figures = run_bench(scenario, options)
    click.echo(summary_text(figures))
    click.echo(f"figures: {figures['meta']['run_dir']}/result.json")


def _command_line() -> str:
    # Run as `python -c "from perf.cli import bench; bench()" ...` until the
    # main CLI registers the group; say so rather than record a bare "-c".
    if sys.argv and sys.argv[0] == "-c":
        prefix = 'python -c "from perf.cli import bench; bench()"'
        return f"{prefix} {shlex.join(sys.argv[1:])}"
    if sys.argv and Path(sys.argv[0]).name == "sieve":
        return shlex.join(["sieve", *sys.argv[1:]])
    return shlex.join(sys.argv)


@click.group()
def bench() -> None:
    """Load scenarios against a fresh local engine; figures vs targets."""


_rate = click.option(
    "--rate", "rate_per_s", default=3_700.0, show_default=True,
    help="Offered registrations per second (peak of a day curve).",
)  # fmt: skip
_interval = click.option(
    "--interval-s", default=5.0, show_default=True,
    help="Mean seconds between people at one device; devices = rate x this.",
)  # fmt: skip
_shape = click.option(
    "--curve", "shape", type=click.Choice(["fixed", "day"]), default="fixed",
    show_default=True, help="Fixed rate, or a day's ramp, peak and tail.",
)  # fmt: skip
_bad = click.option("--bad-share", default=0.02, show_default=True)


@bench.command()
@click.option("--seconds", default=60.0, show_default=True)
@_rate
@_interval
@_shape
@_bad
@click.option("--offline-share", default=0.0, show_default=True)
@_common
def steady(seconds: float, rate_per_s: float, interval_s: float, shape: str,
           bad_share: float, offline_share: float, **kwargs: Any) -> None:  # fmt: skip
    """A fixed high rate from phones, one registration per message."""
    from perf.scenarios import steady as make

    scenario = make(
        seconds=seconds,
        rate_per_s=rate_per_s,
        interval_s=interval_s,
        shape=shape,  # type: ignore[arg-type]
        bad_share=bad_share,
        offline_share=offline_share,
    )
    _run(scenario, **kwargs)


@bench.command()
@click.option("--count", default=20_000, show_default=True)
@click.option("--within-s", default=1.0, show_default=True)
@click.option("--devices", default=2_000, show_default=True)
@click.option("--bad-share", default=0.0, show_default=True)
@_common
def burst(count: int, within_s: float, devices: int, bad_share: float,
          **kwargs: Any) -> None:  # fmt: skip
    """COUNT registrations arriving within one second; all acked within 5 s?"""
    from perf.scenarios import burst as make

    _run(
        make(count=count, within_s=within_s, devices=devices, bad_share=bad_share),
        **kwargs,
    )


@bench.command()
@click.option("--devices", default=60_000, show_default=True)
@click.option("--seconds", default=60.0, show_default=True)
@click.option("--rate", "rate_per_s", default=725.0, show_default=True)
@click.option("--heartbeat-s", default=30.0, show_default=True)
@click.option("--connect-per-s", default=2_000.0, show_default=True)
@_common
def connections(devices: int, seconds: float, rate_per_s: float, heartbeat_s: float,
                connect_per_s: float, **kwargs: Any) -> None:  # fmt: skip
    """Many devices connected at once, idle ones heartbeating, while ingesting."""
    from perf.scenarios import connections as make

    scenario = make(
        devices=devices,
        seconds=seconds,
        rate_per_s=rate_per_s,
        heartbeat_s=heartbeat_s,
        connect_per_s=connect_per_s,
    )
    _run(scenario, **kwargs)


@bench.command()
@click.option("--seconds", default=180.0, show_default=True)
@_rate
@_interval
@_shape
@_bad
@click.option("--offline-share", default=0.01, show_default=True)
@_common
def soak(seconds: float, rate_per_s: float, interval_s: float, shape: str,
         bad_share: float, offline_share: float, **kwargs: Any) -> None:  # fmt: skip
    """Steady for long (target 10 min), devices going offline and resending."""
    from perf.scenarios import soak as make

    scenario = make(
        seconds=seconds,
        rate_per_s=rate_per_s,
        interval_s=interval_s,
        shape=shape,  # type: ignore[arg-type]
        bad_share=bad_share,
        offline_share=offline_share,
    )
    _run(scenario, **kwargs)


@bench.command("plot")
@click.argument(
    "results", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True)
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path(__file__).resolve().parent / "plots",
    show_default=True,
)
def plot_command(results: tuple[Path, ...], out_dir: Path) -> None:
    """Per-second throughput and latency PNGs from result JSON files."""
    from perf.plots import plot_files

    for path in plot_files(list(results), out_dir):
        click.echo(str(path))


@bench.command("table")
@click.argument(
    "results", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True)
)
def table_command(results: tuple[Path, ...]) -> None:
    """Markdown rows of figures against targets, from result JSON files."""
    import json

    from perf.report import markdown_rows

    click.echo("| scenario | figure | target | measured | verdict |")
    click.echo("| --- | --- | --- | --- | --- |")
    for path in results:
        for row in markdown_rows(json.loads(path.read_text())):
            click.echo(row)


@click.command()
@click.option("--residents", default=14_000_000, show_default=True)
@click.option("--hours", default=4.0, show_default=True)
@click.option("--peak-factor", type=float, help="Default: the day curve's.")
@click.option("--headroom", default=1.5, show_default=True)
@click.option("--node-cores", default=8, show_default=True)
@click.option("--replication", default=3, show_default=True)
@click.option(
    "--results",
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory of bench JSON results (default perf/results).",
)
def plan(residents: int, hours: float, peak_factor: float | None, headroom: float,
         node_cores: int, replication: int, results: Path | None) -> None:  # fmt: skip
    """Nodes per tier for a round, from the measured per-core rates."""
    from perf.plan import (
        DAY_PEAK_FACTOR,
        RESULTS_DIR,
        PlanInput,
        make_plan,
        plan_text,
        rates_from_results,
    )

    needs = PlanInput(
        residents=residents,
        hours=hours,
        peak_factor=peak_factor or DAY_PEAK_FACTOR,
        headroom=headroom,
        node_cores=node_cores,
        replication=replication,
    )
    rates = rates_from_results(results or RESULTS_DIR)
    click.echo(plan_text(needs, rates, make_plan(needs, rates)))
