"""Forecasts of consumption and generation: seasonal naive, features, models, stored forecasts."""
