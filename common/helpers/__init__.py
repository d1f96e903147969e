"""Reusable helpers: import the sub-package you need (``common.helpers.health``)."""
