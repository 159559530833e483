"""Sieve's engine: validation, routing, batching and the store, without Ray.

The minimal local start, with the Cassandra node already up::

    import asyncio, ray
    from engine.config import Settings
    from engine.stack import prepare_store, start_gateway

    settings = Settings.from_env()
    prepare_store(settings)
    ray.init()
    stack = asyncio.run(start_gateway(settings, num_hosts=2))

``sieve up`` does all of this (and starts the store and a load) in one step.
"""

__all__: list[str] = []
