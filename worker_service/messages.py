"""Marshmallow's stock messages, reworded for the one-line errors operators read."""

from __future__ import annotations

_PLAIN = {
    "Not a valid number": "must be a number",
    "Not a valid integer": "must be a whole number",
    "Not a valid boolean": "must be true or false",
    "Missing data for required field": "is required",
}


def plain(message: object) -> str:
    """``message`` without its trailing dot and with marshmallow's stock phrases reworded."""
    text = str(message).rstrip(".")
    for stock, wording in _PLAIN.items():
        text = text.replace(stock, wording)
    return text
