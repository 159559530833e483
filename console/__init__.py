"""Sieve's operations console: live city, district and saturation views.

A NiceGUI web app fed only by the running engine: the gateway's Operations
gRPC service and aggregate reads of the store. Start it with
``python -m console.main`` (see :mod:`console.main`).
"""
