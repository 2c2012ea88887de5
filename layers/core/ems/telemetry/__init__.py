"""Telemetry: ingest of readings, their idempotent storage and rollups, and reads of series."""
