"""Shared plumbing: settings, errors, clock, ids, pagination, AWS clients, HTTP glue."""
