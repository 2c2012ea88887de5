"""Alerts: threshold breaches, sensors gone offline and system events of other domains."""
