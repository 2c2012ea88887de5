"""EMS: energy management for buildings and small microgrids. Everything a Lambda function runs."""

__version__ = "0.1.0"
