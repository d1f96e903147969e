"""Which running host a record names: the host name plus an id of this running service, unique per master.

Host names are not unique: cloned VMs and containers often share one. A host
identity made of the name alone confused two such hosts: a cut-off standby
said the leader "is on this host" while it ran elsewhere, and a run lost with
a whole host was recorded as a crash of the other (crash hold, quarantine).

So every record that says where something runs (the lease holder, the
leadership log, each live run) carries ``<hostname>#<instance>``: the instance
is random, made once per gunicorn master (``on_starting``, inherited by its
workers through the environment, so a reload keeps it) or once per process
outside gunicorn. It is compared whole; people read :func:`host_label`, the
host name alone.
"""

from __future__ import annotations

import os
import socket
import uuid

INSTANCE_VARIABLE = "WORKER_SERVICE_INSTANCE"
SEPARATOR = "#"  # never in a host name (RFC 1123: letters, digits, hyphens and dots)


def ensure_instance() -> str:
    """This service's instance id, made now if none was (the master calls it first, so its workers share it)."""
    instance = os.environ.get(INSTANCE_VARIABLE)
    if not instance:
        instance = uuid.uuid4().hex[:12]
        os.environ[INSTANCE_VARIABLE] = instance
    return instance


def host_id() -> str:
    """This running service's identity: ``<hostname>#<instance>``."""
    return f"{socket.gethostname()}{SEPARATOR}{ensure_instance()}"


def host_label(identity: str | None) -> str | None:
    """The host name people read for an identity (``None`` stays ``None``; a bare host name stays as it is)."""
    if identity is None:
        return None
    return identity.split(SEPARATOR, 1)[0]
