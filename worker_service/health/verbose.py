"""``?verbose``: a health report as kube-apiserver's ``/readyz?verbose`` text, one ``[+]``/``[-]`` line per check."""

from __future__ import annotations

from collections.abc import Iterable

from common.helpers.health import Status

from .report import HealthReport

WITHHELD = "reason withheld"


def verbose_text(report: HealthReport, names: Iterable[str], excluded: Iterable[str], unmatched: Iterable[str],
                 details: bool) -> str:
    """The text: a line per component in ``names`` order, a ``warn:`` line for unmatched exclusions, the verdict.

    ``[-]`` marks an unavailable component, ``[+]`` any other (a degraded one
    says so). Reasons only with ``details``, else "reason withheld" as
    Kubernetes writes. The last line follows the overall status (the critical
    rule of /health): ``health check passed`` or ``health check failed``.
    """
    excluded, lines = set(excluded), []
    for name in names:
        result = report.results.get(name)
        if name in excluded or result is None:
            lines.append(f"[+]{name} excluded: ok")
            continue
        reason = (result.reason or "no reason given") if details else WITHHELD
        if result.status is Status.AVAILABLE:
            lines.append(f"[+]{name} ok")
        elif result.status is Status.DEGRADED:
            lines.append(f"[+]{name} degraded: {reason}")
        else:
            lines.append(f"[-]{name} failed: {reason}")
    unmatched = list(unmatched)
    if unmatched:
        quoted = ", ".join(f'"{name}"' for name in unmatched)
        lines.append(f"warn: some health checks cannot be excluded: no matches for {quoted}")
    lines.append("health check failed" if report.status is Status.UNAVAILABLE else "health check passed")
    return "\n".join(lines) + "\n"
