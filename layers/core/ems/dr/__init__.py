"""Demand response: invitations from a grid operator or aggregator with their life cycle, the
site's flexibility from real state, auto-response, and (later) execution and performance."""
