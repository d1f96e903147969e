"""Typed errors a component check raises to say what is wrong.

A check returns normally when its component is available. It raises
:class:`ServiceUnavailable` when the component cannot be used at all and
:class:`ServiceDegraded` when it works but not as it should. Any other
exception is treated as unavailable, with the exception's type as reason.
"""

from __future__ import annotations


class CheckError(Exception):
    """Base of the errors a check raises. ``reason`` is short and holds no secret."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ServiceUnavailable(CheckError):
    """The component cannot be used."""


class ServiceDegraded(CheckError):
    """The component answers, but something about it is wrong."""
