"""Tariffs: the prices, CO2 factor and grid limits of a site."""
