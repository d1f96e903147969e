"""The service's version, in a module of its own: setup.cfg reads it, and /openapi.json shows it."""

__version__ = "0.1.0"
