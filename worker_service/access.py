"""Who may read and who may control: ``STATUS_TOKEN`` reads, ``ADMIN_TOKEN`` runs, pauses and resumes jobs.

A token is presented as ``Authorization: Bearer <token>``, or with HTTP Basic
as the password (any user name; browsers cannot send a bearer token, and the
user name says who asked). Tokens are compared in constant time and never
logged or echoed.

* Reads (:func:`token_required`: /status, /metrics, GET /jobs...): open while
  ``STATUS_TOKEN`` is unset; else the status token or the admin token.
* Control (:func:`admin_required`: POST /jobs/<id>/run|pause|resume): the
  admin token only. Without ``ADMIN_TOKEN`` control is off (403 naming it).
  A caller with no valid token gets 401 with a challenge for each scheme (a
  browser prompts); one holding the status token gets 403 (authenticated,
  not allowed, as RFC 6750's ``insufficient_scope``). While ``STATUS_TOKEN``
  is set, a caller with no valid token learns nothing else: 401, even when
  control is off. A browser's request from any other origin is refused (403):
  a browser that holds Basic credentials sends them with any page's form,
  including a page of another app on this host (another port is another
  origin, but the same *site*). ``Sec-Fetch-Site``, when sent, must be
  ``same-origin`` or ``none``; else ``Origin``, when sent, must be this
  service's own origin exactly: scheme, host and port (the scheme from
  ``X-Forwarded-Proto`` only when the peer is a proxy on this host, as
  ``X-Forwarded-For`` is believed). A request with neither header is no
  browser's (curl, the CLI) and passes. A browser's request from this origin
  (either header sent, ``Sec-Fetch-Site: none`` aside: typed in, no page made
  it) must also carry the status page's per-page token in ``X-Control-Token``
  (:mod:`worker_service.control_token`), or it is refused (403).

A view wrapped in a guard checks it when it runs, and carries the check under
:data:`ACCESS_GUARD`. :func:`init_app` runs that check before routing too,
because Flask answers OPTIONS and a 405 without ever calling the view: no
method learns anything (not even the ``Allow`` header) about a guarded
endpoint.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import hmac
import ipaddress
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from . import control_token
from .web import error_response

# A view carrying a callable under this name is guarded: the callable returns a
# refusal (a Response) or None. init_app runs it before routing, for every method.
ACCESS_GUARD = "access_guard"
REALM = "worker-service"
CHALLENGES = (f'Bearer realm="{REALM}"', f'Basic realm="{REALM}", charset="UTF-8"')  # Bearer first: clients read it


@dataclasses.dataclass(frozen=True)
class Credential:
    """A token as presented: its secret, and Basic's user name (``None`` for a bearer token)."""

    secret: str
    user: str | None = None


def presented_credential() -> Credential | None:
    """The request's bearer token or Basic password, or ``None`` when it carries neither in a readable form."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer" and value:
        return Credential(value)
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, colon, password = decoded.partition(":")
        if colon and password:
            return Credential(password, user or None)
    return None


def _matches(given: Credential | None, expected: str | None) -> bool:
    return given is not None and bool(expected) and hmac.compare_digest(given.secret.encode(), expected.encode())


def _unauthorized() -> Response:
    response = error_response(401, "a valid token is required: 'Authorization: Bearer <token>', "
                                   "or HTTP Basic with the token as the password")
    for challenge in CHALLENGES:  # one header line each: browsers do not split challenges on commas
        response.headers.add("WWW-Authenticate", challenge)
    return response


def is_admin() -> bool:
    """Whether the request presents the admin token (the status page then shows its control buttons)."""
    return _matches(presented_credential(), current_app.config.get("ADMIN_TOKEN"))


def ask_for_admin() -> Response:
    """401 with a Basic challenge: the browser prompts, and the admin token as the password signs in to control."""
    response = error_response(401, "sign in with the ADMIN_TOKEN as the password (any user name) to control jobs")
    response.headers["WWW-Authenticate"] = f'Basic realm="{REALM}", charset="UTF-8"'
    return response


def refuse_without_token() -> Response | None:
    """401 unless reads are open (``STATUS_TOKEN`` unset) or the status or admin token is presented; else None."""
    settings = current_app.config
    status_token = settings.get("STATUS_TOKEN")
    if not status_token:
        return None
    given = presented_credential()
    # Both compared every time (no short cut), so the time taken does not tell which token was close.
    if _matches(given, status_token) | _matches(given, settings.get("ADMIN_TOKEN")):
        return None
    return _unauthorized()


def refuse_without_admin_token() -> Response | None:
    """None for the admin token on a request from no other site; else the refusal the module docstring tables."""
    settings = current_app.config
    status_token, admin_token = settings.get("STATUS_TOKEN"), settings.get("ADMIN_TOKEN")
    given = presented_credential()
    admin, reader = _matches(given, admin_token), _matches(given, status_token)
    if admin:
        return _refuse_cross_site() or _refuse_without_page_token(admin_token)
    if status_token and not reader:
        return _unauthorized()
    if not admin_token:
        return error_response(403, "job control is off: set ADMIN_TOKEN (at least 16 characters, not the "
                                   "STATUS_TOKEN) to run, pause and resume jobs")
    if reader:
        return error_response(403, "the status token only reads; running, pausing and resuming jobs needs the "
                                   "ADMIN_TOKEN", {"WWW-Authenticate": f'Bearer realm="{REALM}", '
                                                                       'error="insufficient_scope"'})
    return _unauthorized()


def _refuse_cross_site() -> Response | None:
    """403 for a browser's request from any origin but this service's own (see the module docstring); else None."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if fetch_site is not None:
        foreign = fetch_site.strip().lower() not in ("same-origin", "none")
    elif origin is not None:
        own = own_origin()
        foreign = own is None or _origin_of(origin) != own
    else:
        foreign = False  # no browser sent it
    if foreign:
        return error_response(403, "a request from another site may not control jobs")
    return None


def _refuse_without_page_token(admin_token: str | None) -> Response | None:
    """403 for a browser's request (it sent ``Origin`` or ``Sec-Fetch-Site``) without a valid page token."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    browser = request.headers.get("Origin") is not None or fetch_site is not None
    if fetch_site is not None and fetch_site.strip().lower() == "none":
        browser = False  # typed in or a bookmark: no page made it
    if browser and not control_token.valid(request.headers.get(control_token.HEADER), admin_token):
        return error_response(403, f"a browser's request to control jobs needs the status page's {control_token.HEADER}: "
                                   "use the page's buttons, or reload the page")
    return None


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_of(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an origin (the default port filled in); None when it is no http(s) origin."""
    try:
        parts = urlsplit(url.strip())
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:  # a port that is no number, an unclosed [
        return None
    if scheme not in _DEFAULT_PORTS or not host or parts.username is not None or parts.path not in ("", "/") \
            or parts.query or parts.fragment:
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def own_origin() -> tuple[str, str, int] | None:
    """This request's own origin as the client addressed it: the Host header, and the scheme of the connection.

    Behind a proxy on this host (a unix socket or loopback peer: deploy/'s
    nginx), the scheme is the one its ``X-Forwarded-Proto`` names; another
    peer's header is not believed.
    """
    scheme = request.scheme
    if is_local_peer(request.remote_addr or ""):
        forwarded = request.headers.get("X-Forwarded-Proto", "").rpartition(",")[2].strip().lower()
        if forwarded in _DEFAULT_PORTS:
            scheme = forwarded
    return _origin_of(f"{scheme}://{request.host}")


def is_ip(text: str) -> bool:
    """Whether ``text`` is an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_local_peer(peer: str) -> bool:
    """A unix-socket peer (no IP address) or a loopback one: a proxy on this host, whose forwarded headers count."""
    return not is_ip(peer) or ipaddress.ip_address(peer).is_loopback


def guarded_by(refuse: Callable[[], Response | None]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator guarding a view with ``refuse``, for every HTTP method (see the module docstring)."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            return refuse() or view(*args, **kwargs)

        setattr(guarded, ACCESS_GUARD, refuse)
        return guarded

    return decorate


def token_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Guard a view that reads: the status token (or the admin token) when ``STATUS_TOKEN`` is set."""
    return guarded_by(refuse_without_token)(view)


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Guard a view that controls jobs: the admin token, on a request from no other site."""
    return guarded_by(refuse_without_admin_token)(view)


def _requested_guard(app: Flask) -> Callable[[], Response | None] | None:
    """The access guard of any view the request's path names, whatever the method (a 405 has no endpoint).

    When a path's methods have different guards (GET reads, POST controls),
    a method the path lacks gets the strictest: the control guard.
    """
    if request.url_rule is not None:
        endpoint = request.url_rule.endpoint
        known: dict[str, Callable[[], Response | None] | None] = app.extensions.setdefault("access_guards", {})
        if endpoint not in known:  # the views are fixed once the app is built: judge each endpoint once
            known[endpoint] = _strictest(app, [endpoint])
        return known[endpoint]
    if isinstance(request.routing_exception, MethodNotAllowed) and request.routing_exception.valid_methods:
        adapter = app.create_url_adapter(request)
        endpoints = []
        for method in sorted(request.routing_exception.valid_methods):
            try:
                endpoints.append(adapter.match(method=method)[0])
            except HTTPException:
                continue
        return _strictest(app, endpoints)
    return None


def _strictest(app: Flask, endpoints: list[str]) -> Callable[[], Response | None] | None:
    guards = [guard for endpoint in endpoints
              if (guard := getattr(app.view_functions.get(endpoint), ACCESS_GUARD, None)) is not None]
    if refuse_without_admin_token in guards:
        return refuse_without_admin_token
    return guards[0] if guards else None


def init_app(app: Flask) -> None:
    """Run the guard of any guarded view before routing, for every method."""

    @app.before_request
    def _access_guard() -> Response | None:
        guard = _requested_guard(app)
        return guard() if guard is not None else None
