"""Saturation thresholds and the Prometheus text they are exported as."""

from __future__ import annotations

from console.metrics import ConsoleMetrics, Level, SaturationSampler, cpu_level


def test_cpu_is_red_only_when_sustained() -> None:
    """A sustained 85% is red; a spike alone is amber; a calm machine is ok."""
    assert Level.RED == cpu_level(sustained=85.0, current=40.0)
    assert Level.AMBER == cpu_level(sustained=30.0, current=99.0)
    assert Level.AMBER == cpu_level(sustained=70.0, current=70.0)
    assert Level.OK == cpu_level(sustained=20.0, current=20.0)


def test_metrics_expose_this_machines_cpu() -> None:
    """The exposition carries a CPU gauge per core of this machine."""
    metrics = ConsoleMetrics()
    host = SaturationSampler().sample()
    metrics.update(host, None, None)
    text = metrics.exposition().decode()
    assert "sieve_console_host_cpu_percent " in text
    assert 'sieve_console_host_cpu_core_percent{core="0"}' in text
    assert "sieve_console_ray_nodes_alive -1.0" in text
