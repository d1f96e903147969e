"""The CLI's HTTP client: one request to the service, over TCP or over gunicorn's unix socket.

``--url`` is either ``http(s)://host[:port][/prefix]`` (``/health`` at its end
is dropped, so the URL a load balancer probes works too) or
``unix:/run/worker-service/gunicorn.sock`` (gunicorn's own bind syntax; also
``unix:///…``), which reaches gunicorn without nginx.

Every failure raises :class:`Unknown` with one line to print. Those that mean
the service is not answering (connection refused, no socket, a timeout, a
connection cut before an answer, a host name that does not resolve) raise its
subclass :class:`Unreachable`: ``check`` reports them CRITICAL, as
``check_http`` does (the Monitoring Plugins guidelines keep UNKNOWN for a bad
argument or a failure inside the plugin, and name socket timeouts and name
resolution as failures that are not UNKNOWN). An HTTP answer, whatever its
status, is an :class:`Answer`: the caller judges it.

httpx sends the requests (it speaks HTTP over a unix socket natively); its
import is deferred to the first request, so ``check-config`` (run by
gunicorn's master at every start) does not pay for it.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import errno
import html
import re
import signal
import socket
import ssl
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["AUTHORITY", "Answer", "Service", "Unknown", "Unreachable", "shown_url"]

UNIX_PREFIX = "unix:"
UNIX_HOST = "http://localhost"  # the Host a request over the socket names (the app reads no Host but a POST's Origin check)
MESSAGE_CHARS = 200  # at most this much of a proxy's message is repeated
AUTHORITY = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*:)?//")  # a scheme (if any), then //: where credentials may follow
_TAG = re.compile(r"<[^>]*>")
_NOT_JSON = object()


class Unknown(Exception):
    """The service's state cannot be told; the message says why."""


class Unreachable(Unknown):
    """The service did not answer at all (refused, no socket, timeout, cut): for a monitor, it is down."""


def shown_url(url: str) -> str:
    """``url`` as printed: no user name or password, no query or fragment.

    Plain text work, never a parse that could fail: everything between
    ``//`` and the last ``@`` goes, even where a parser would read a path.
    """
    start = AUTHORITY.match(url)
    head, rest = (url[:start.end()], url[start.end():]) if start else ("", url)
    if start and "@" in rest:
        rest = rest.rpartition("@")[2]
    return head + re.split(r"[?#]", rest, maxsplit=1)[0]


@dataclasses.dataclass(frozen=True)
class Answer:
    """An HTTP answer: its status, and its body as JSON (``data``) when it is JSON."""

    shown: str  # the request's URL as printed
    status: int
    reason: str
    data: Any  # the parsed JSON, or _NOT_JSON
    text: str  # the body as text, for a message
    elapsed: float = 0.0  # seconds from the request's start (connection included) to the answer's last byte

    @property
    def is_json(self) -> bool:
        return self.data is not _NOT_JSON

    @property
    def body(self) -> dict[str, Any] | None:
        """The JSON object, or None (not JSON, or JSON of another shape)."""
        return self.data if isinstance(self.data, dict) else None

    @property
    def message(self) -> str:
        """What the answer says, in one short line: the service's (or a JSON proxy's) ``message``, else the first
        line of the body that says more than the status (tags dropped: a proxy's error page), else the reason."""
        if self.body is not None:
            detail = self.body.get("message") or self.body.get("error")
            if detail:
                return _one_line(str(detail))
        status_words = {f"{self.status} {self.reason}".lower(), self.reason.lower(), str(self.status)}
        for line in _TAG.sub("\n", self.text[:4096]).splitlines():
            line = _one_line(html.unescape(line))
            if line and line.lower() not in status_words:
                return line
        return self.reason or "no message"

    @property
    def status_line(self) -> str:
        """``HTTP 502 Bad Gateway``."""
        return f"HTTP {self.status} {self.reason}".rstrip()


def _one_line(text: str) -> str:
    return " ".join(text.split())[:MESSAGE_CHARS]


@dataclasses.dataclass(frozen=True)
class Service:
    """Where the service answers: a base URL, and the unix socket to send it through (if any)."""

    base: str  # scheme://host[:port][/prefix], no credentials, no trailing slash
    socket_path: str | None = None
    basic: str | None = None  # the Authorization value made of user:password@ in --url

    @classmethod
    def parse(cls, url: str) -> Service:
        """The service ``url`` names; :class:`Unknown` for a URL that cannot be one."""
        if url.startswith(UNIX_PREFIX):
            path = url[len(UNIX_PREFIX):]
            path = path[2:] if path.startswith("//") else path  # unix:///run/x.sock, as gunicorn takes it
            if not path:
                raise Unknown(f"bad --url {url!r}: a unix socket needs a path (unix:/run/worker-service/gunicorn.sock)")
            return cls(UNIX_HOST, socket_path=path)
        bad = f"bad --url {shown_url(url)!r}: not an http://, https:// or unix: URL"
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            raise Unknown(bad) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Unknown(bad)
        path = parts.path.rstrip("/")
        if path.endswith("/health"):  # the URL a load balancer probes names the same service
            path = path[:-len("/health")]
        base = urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], path, "", ""))
        return cls(base, basic=_basic(parts))

    def shown(self, path: str = "") -> str:
        """The URL of ``path`` as printed (no credentials, no query); over a socket ``/health via unix:/…``."""
        if self.socket_path is None:
            return shown_url(self.base + path)
        target = shown_url(path)
        return f"{target} via unix:{self.socket_path}" if target else f"unix:{self.socket_path}"

    def request(self, path: str, timeout: float, token: str | None = None, method: str = "GET",
                headers: Mapping[str, str] | None = None) -> Answer:
        """Send ``method`` to ``path`` (with its query) and return the answer, whatever its status.

        ``timeout`` bounds the whole call (name lookup included) with an
        interval timer, as monitoring plugins do: httpx's timeouts alone apply
        per operation. A bearer ``token`` wins over Basic credentials from
        ``--url``; httpx drops either when a redirect leads to another origin
        (but http:// to https:// on the same host).
        """
        import httpx  # deferred: see the module docstring

        shown = self.shown(path)
        sent = {"Accept": "application/json", "User-Agent": "worker-service-check", **(headers or {})}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        elif self.basic:
            sent["Authorization"] = self.basic
        transport = httpx.HTTPTransport(uds=self.socket_path) if self.socket_path else None
        # The system's CA store, as urllib (and curl) use it, not certifi's: an internal CA stays trusted (and httpx
        # builds a context even for http://, a redirect may lead to https://; this one is the cheaper to load).
        verify = ssl.create_default_context()
        started = time.monotonic()
        try:
            with _deadline(timeout), httpx.Client(transport=transport, timeout=timeout, follow_redirects=True,
                                                  verify=verify) as client:
                response = client.request(method, self.base + path, headers=sent)
        except (TimeoutError, httpx.TimeoutException):
            raise Unreachable(f"no answer from {shown} within {timeout:g} s") from None
        except httpx.TransportError as error:
            raise _transport_failure(shown, error) from None
        except httpx.HTTPError as error:  # too many redirects, a body that cannot be decoded
            raise Unknown(f"{shown}: {type(error).__name__}: {error}") from None
        except (ValueError, OSError) as error:  # a URL or socket path the library refuses (e.g. AF_UNIX too long)
            raise Unknown(f"bad --url {shown!r}: {error}") from None
        try:
            data = response.json()
        except ValueError:
            data = _NOT_JSON
        return Answer(shown, response.status_code, response.reason_phrase, data,
                      response.content.decode("utf-8", "replace"), time.monotonic() - started)


def _basic(parts: urllib.parse.SplitResult) -> str | None:
    """A Basic ``Authorization`` value made of the URL's user name and password, if it has a password."""
    if not parts.password:  # the service reads the token from the password: a user name alone says nothing
        return None
    pair = f"{urllib.parse.unquote(parts.username or '')}:{urllib.parse.unquote(parts.password)}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def _transport_failure(shown: str, error: Exception) -> Unknown:
    """The :class:`Unknown` (or :class:`Unreachable`) a failure to exchange a request and an answer is."""
    import httpx

    cause = _os_error(error)
    if isinstance(error, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
        return Unknown(f"bad --url {shown!r}: {error}")
    if isinstance(error, httpx.RemoteProtocolError):
        if "without sending a response" in str(error):  # accepted, then closed: a worker that died under it
            return Unreachable(f"{shown} closed the connection without an answer")
        return Unknown(f"{shown} did not answer HTTP: {error}")
    if isinstance(cause, PermissionError):  # the plugin's own limit, not the service's state
        return Unknown(f"cannot reach {shown}: permission denied; run it as the service's user or a member of "
                       "the socket's group (nginx's)")
    if isinstance(cause, FileNotFoundError):  # only a unix socket's path is looked up in the file system
        return Unreachable(f"cannot reach {shown}: no such socket; is the service running?")
    if isinstance(cause, ConnectionRefusedError):
        return Unreachable(f"cannot reach {shown}: connection refused")
    if isinstance(cause, OSError) and (cause.errno is None or cause.errno in (errno.ENAMETOOLONG, errno.ENOTSOCK,
                                                                              errno.ENOTDIR)):
        return Unknown(f"bad --url {shown!r}: {cause.strerror or cause}")  # "AF_UNIX path too long" has no errno
    if isinstance(cause, socket.gaierror):
        return Unreachable(f"cannot reach {shown}: {cause.strerror or cause}")
    return Unreachable(f"cannot reach {shown}: {getattr(cause, 'strerror', None) or cause or error}")


def _os_error(error: BaseException) -> BaseException | None:
    """The operating system's error under a library's (httpx wraps httpcore's, which wraps the OSError)."""
    seen: BaseException | None = error
    for _ in range(5):
        seen = seen.__cause__ or seen.__context__ if seen is not None else None
        if isinstance(seen, OSError):
            return seen
    return None


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the main thread after ``seconds``."""

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
