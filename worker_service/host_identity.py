"""Which running host a record names: the host name plus an id of this running service, unique per master.

Host names are not unique: cloned VMs and containers often share one. A host
identity made of the name alone confused two such hosts: a cut-off standby
said the leader "is on this host" while it ran elsewhere, and a run lost with
a whole host was recorded as a crash of the other (crash hold, quarantine).

So every record that says where something runs (the lease holder, the
leadership log, each live run) carries ``<hostname>#<machine>.<instance>``:
the machine is the kernel's boot id (new at every boot, different on every VM)
and this process's pid namespace (different in every container), so that two
identities with the same machine have comparable pids; the instance is random,
made once per gunicorn master (``on_starting``, inherited by its workers
through the environment, so a reload keeps it) or once per process outside
gunicorn. It is compared whole; :func:`same_machine` tells a previous master
of this very machine (its processes can be looked up by pid); people read
:func:`host_label`, the host name alone. ``WORKER_SERVICE_MACHINE`` replaces
the machine part (the tests simulate several machines on one).
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


MACHINE_VARIABLE = "WORKER_SERVICE_MACHINE"


def machine() -> str:
    """This kernel's boot id (8 characters) and pid namespace: processes with the same one share pids."""
    override = os.environ.get(MACHINE_VARIABLE)
    if override:
        return override
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            boot = handle.read().strip().replace("-", "")[:8]
        namespace = format(os.stat("/proc/self/ns/pid").st_ino, "x")
    except OSError:
        return ""
    return f"{boot}-{namespace}"


def host_id() -> str:
    """This running service's identity: ``<hostname>#<machine>.<instance>``."""
    return f"{socket.gethostname()}{SEPARATOR}{machine()}.{ensure_instance()}"


def same_machine(identity: str | None, other: str | None) -> bool:
    """Whether two identities name services on one machine since its last boot (their pids mean the same)."""
    if not identity or not other:
        return False
    name, _, rest = identity.partition(SEPARATOR)
    other_name, _, other_rest = other.partition(SEPARATOR)
    here, there = rest.partition(".")[0], other_rest.partition(".")[0]
    return name == other_name and bool(here) and here == there


def host_label(identity: str | None) -> str | None:
    """The host name people read for an identity (``None`` stays ``None``; a bare host name stays as it is)."""
    if identity is None:
        return None
    return identity.split(SEPARATOR, 1)[0]


def process_alive(pid: int, since: float | None = None) -> bool:
    """Whether process ``pid`` exists on this machine (a zombie, dead but not yet reaped, does not).

    With ``since`` (epoch seconds), only if it was already running then: a
    process started later is another one that got the same pid (pids are
    reused, and a restarted container hands out the same ones again).
    """
    import psutil

    try:
        process = psutil.Process(pid)
        if since is not None and process.create_time() > since:
            return False
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # it exists, but may not be looked at (another user's)
        return True
