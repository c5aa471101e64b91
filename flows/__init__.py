"""Prefect flows: wiring of the stages in :mod:`tasks`, nothing more."""
