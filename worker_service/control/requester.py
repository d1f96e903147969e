"""Who asked for a command: a name the caller gives, else the token and the client's address.

The name comes from the ``X-Requested-By`` header, else HTTP Basic's user
name. It is a label the holder of the admin token chooses, not an identity:
the admin token is the authentication. It is kept short and plain (letters,
digits and ``._@+:/-`` and spaces, at most :data:`MAX_NAME` characters), and
any configured secret in it is masked first (an operator who typed the token
as the user name must not see it echoed in /jobs).

The client's address is the direct peer's, except behind a proxy on this
host (a unix socket or loopback peer, as nginx in deploy/ is): then the last
``X-Forwarded-For`` entry, the one that proxy set (deploy/'s nginx replaces
the header with ``$remote_addr``). A client on this host could forge it; it
is a label for the log and the history, like the name.
"""

from __future__ import annotations

import re

from flask import request

from common.helpers.health import redact

from ..access import is_ip, is_local_peer, presented_credential

REQUESTED_BY_HEADER = "X-Requested-By"
MAX_NAME = 64
_NOT_PLAIN = re.compile(r"[^A-Za-z0-9 ._@+:/-]+")


def plain_name(raw: str | None) -> str | None:
    """``raw`` with secrets masked, anything but plain characters dropped, cut to :data:`MAX_NAME`; None if empty."""
    if not raw:
        return None
    cleaned = " ".join(_NOT_PLAIN.sub("", redact(raw[:1024])).split())[:MAX_NAME].strip()
    return cleaned or None


def client_address() -> str | None:
    """The client's IP address as described in the module docstring, or None when none can be told."""
    peer = request.remote_addr or ""
    if is_local_peer(peer):
        forwarded = request.headers.get("X-Forwarded-For", "").rpartition(",")[2].strip()
        if is_ip(forwarded):
            return forwarded
    return peer if is_ip(peer) else None


def requested_by() -> str:
    """The name for the command's ``requested_by``: the given name, else ``token@<address>``."""
    credential = presented_credential()
    name = plain_name(request.headers.get(REQUESTED_BY_HEADER)) or plain_name(credential and credential.user)
    if name:
        return name
    address = client_address()
    return f"token@{address}" if address else "token"
