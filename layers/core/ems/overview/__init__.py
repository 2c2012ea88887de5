"""Overview: the site snapshot of GET /api/v1/overview, composed from the registry and telemetry."""
