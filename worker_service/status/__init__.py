"""GET /status: the detailed view."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the /status routes."""
