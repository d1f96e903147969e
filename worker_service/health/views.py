"""The health blueprint: GET/HEAD /health (seed JSON, health+json, ?verbose, ?exclude), /health/live, /health/<component>."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from common.helpers.health import format_timestamp, utc_now

from ..web import error_response, json_response
from .health_json import cache_control
from .options import HEALTH_JSON, Format, HealthQuery, details_allowed, parse_query
from .report import HealthReport, build_health_report
from .schemas import ComponentHealthSchema, LivenessSchema
from .verbose import verbose_text

bp = Blueprint("health", __name__)
_liveness_schema = LivenessSchema()
_component_schema = ComponentHealthSchema()
_PLAIN = HealthQuery(Format.SEED)


@bp.get("/health")
def health():
    """Component availability: 200 when available or degraded, 503 when unavailable. HEAD gives no body."""
    engine = current_app.extensions["health"]
    query = parse_query(request, engine.names)
    if query == _PLAIN:  # the seed's request: its body, encoded once per change of results
        status, body = current_app.extensions["health_bodies"].current()
        return json_response(body, status.http_status)
    report = build_health_report(engine, current_app.config["HEALTH_CRITICAL_COMPONENTS"], exclude=query.exclude)
    if query.format is Format.SEED:
        return json_response(report.body(current_app.config["SERVICE_NAME"]), report.status.http_status)
    return _formatted(report, query)


@bp.get("/health/live")
def live():
    """Liveness only: touches no dependency, so a Redis outage never restarts every pod."""
    body = {"status": "alive", "timestamp": format_timestamp(utc_now()), "service": current_app.config["SERVICE_NAME"]}
    return json_response(_liveness_schema.dump(body), 200)


@bp.get("/health/<component>")
def component(component: str):
    """One component: 200 when available or degraded, 503 when unavailable; 404 names the known components."""
    engine = current_app.extensions["health"]
    if component not in engine.names:
        return error_response(404, f"unknown component {component!r}; known components: {', '.join(engine.names)}")
    query = parse_query(request, engine.names)
    result = engine.run([component])[component]
    report = HealthReport(status=result.status, results={component: result}, timestamp=utc_now())
    if query.format is Format.SEED:
        body = {"status": result.status.value, "component": component, "timestamp": format_timestamp(report.timestamp),
                "service": current_app.config["SERVICE_NAME"]}
        return json_response(_component_schema.dump(body), result.status.http_status)
    return _formatted(report, HealthQuery(query.format, unmatched=query.unmatched), names=[component])


def _formatted(report: HealthReport, query: HealthQuery, names: list[str] | None = None) -> Response:
    """``report`` as health+json or verbose text, with the code of its status."""
    details, token_set = details_allowed(), bool(current_app.config.get("STATUS_TOKEN"))
    vary = "Accept, Authorization" if token_set else "Accept"
    if query.format is Format.VERBOSE:
        names = current_app.extensions["health"].names if names is None else names
        text = verbose_text(report, names, query.exclude, query.unmatched, details)
        response = Response(text, status=report.status.http_status, mimetype="text/plain")
        response.headers.update({"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Vary": vary})
        return response
    body = current_app.extensions["health_json_bodies"].encoded(report, details)
    response = Response(body, status=report.status.http_status, content_type=HEALTH_JSON)
    response.headers["Cache-Control"] = cache_control(report.results.values(),
                                                      current_app.extensions["health"].cache_ttl, details and token_set)
    response.headers["Vary"] = vary
    return response
