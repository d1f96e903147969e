"""Secret masking: what it recognises, what it leaves readable, and that it stays linear and bounded."""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import sys
import time

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from common.helpers.health import redaction
from common.helpers.health.redaction import MASK, RedactingFilter, redact, register_secret

# Bound on the output: the kept head and the cut marker.
OUTPUT_BOUND = redaction.MAX_EXAMINED_CHARS + 40

# The shapes the issue saw verbatim in /status and the log, then the usual header, key/value and URL shapes.
SECRET_SHAPES = [
    ('{"password": "hunter5"}', "hunter5"),
    ("{'password': 'hunter5'}", "hunter5"),
    ('{\\"password\\": \\"hunter5\\"}', "hunter5"),
    ('{"password":"correct horse battery"}', "horse"),
    ("PGPASSWORD=hunter6 psql -h db", "hunter6"),
    ("password: hunter7", "hunter7"),
    ("client_secret=hunter8&grant_type=client_credentials", "hunter8"),
    ("aws_secret_access_key=hunter9", "hunter9"),
    ("postgresql://u:hun/ter10@h/db", "hun/ter10"),
    ("could not connect to postgresql://u:hun/ter10@h/db", "ter10"),
    ("redis://:s3cretpw@10.0.0.5:6379/0", "s3cretpw"),
    ("Authorization: Basic dXNlcjpodW50ZXIxMQ==", "dXNlcjpodW50ZXIxMQ"),
    ("Authorization: Bearer hunter12.sig", "hunter12"),
    ("{'Authorization': 'Basic dXNlcjpodW50ZXIx'}", "dXNlcjpodW50ZXIx"),
    ("Proxy-Authorization: Digest hunter13", "hunter13"),
    ("X-Api-Key: hunter14", "hunter14"),
    ("x-api-key=hunter15", "hunter15"),
    ("Cookie: session=hunter16; theme=dark", "hunter16"),
    ("Set-Cookie: sid=hunter17; Path=/; HttpOnly", "hunter17"),
    ("api_key=hunter18", "hunter18"),
    ("apikey: hunter19", "hunter19"),
    ("access_token=hunter20", "hunter20"),
    ('{"refresh_token": "hunter21"}', "hunter21"),
    ("private_key=hunter22", "hunter22"),
    ("passwd=hunter23", "hunter23"),
    ("DRIVER={x};SERVER=db;UID=u;PWD=hunter24", "hunter24"),
    ("GET /cb?token=hunter25&sig=hunter26 HTTP/1.1", "hunter25"),
    ("GET /cb?token=hunter25&sig=hunter26 HTTP/1.1", "hunter26"),
    ("https://s3/x?X-Amz-Credential=AKIA/hunter27&X-Amz-Signature=hunter28", "hunter28"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.hunter29sig", "hunter29sig"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0", "eyJzdWIiOiIxIn0"),
    ("sent Bearer hunter30 upstream", "hunter30"),
    ("host=db user=u password='hunter 31' dbname=x", "hunter 31"),
    ("connect(password='hunter32', host='db')", "hunter32"),
    ("SUPABASE_SERVICE_ROLE_SECRET=hunter33", "hunter33"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIhunter34\n-----END RSA PRIVATE KEY-----", "MIIhunter34"),
    ("stripe secret: hunter35", "hunter35"),
    ("session_id=hunter36", "hunter36"),
    ("X-Auth-Token: hunter37", "hunter37"),
    ("credentials=hunter38", "hunter38"),
    # Tokens known by their issuer's prefix, wherever they stand (no key names them).
    ("aws configure set aws_access_key_id AKIAIOSFODNN7HUNTR39", "IOSFODNN7HUNTR39"),
    ("temporary credentials ASIAY34FZKBOKHUNTR40 expired", "Y34FZKBOKHUNTR40"),
    ("(AKIAIOSFODNN7HUNTR41)", "IOSFODNN7HUNTR41"),
    ("git clone https://ghp_hunter42abcdefghijklmnopqrstuvwxyz0123@github.com/o/r", "hunter42"),
    ("GITHUB=gho_hunter43abcdefghijklmnopqrstuvwxyz01234", "hunter43"),
    ("ghs_hunter44abcdefghijklmnopqrstuvwxyz01234 in header", "hunter44"),
    ("github_pat_11AAAAAAA0hunter45_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "hunter45"),
    ("curl -H 'PRIVATE-TOKEN: glpat-hunter46aaaaaaaaaaaa' ...", "hunter46"),
    ("runner registered with glrt-hunter47aaaaaaaaaaaa", "hunter47"),
    ("slack said invalid_auth for xoxb-123456789012-1234567890123-hunter48aaaaaa", "hunter48"),
    ("xoxp-123456789012-hunter49", "hunter49"),
    ("xapp-1-A0123-hunter50aaaa", "hunter50"),
    ("stripe.error.AuthenticationError: Invalid API Key provided: sk_live_hunter51aaaaaaaa", "hunter51"),
    ("rk_test_hunter52aaaaaaaa", "hunter52"),
    ("whsec_hunter53aaaaaaaaaa", "hunter53"),
    ("POST https://hooks.slack.com/services/T0ABCDEF1/B0ABCDEF2/hunter57aaaaaaaaaaaaaaaa: 404", "hunter57"),
    ("Max retries exceeded with url: /services/T0ABCDEF1/B0ABCDEF2/hunter58aaaaaaaaaaaaaaaa", "hunter58"),
    # A password with an unencoded "@": libpq reads the host from its first "@" and echoes the rest as a host.
    ("failed to resolve host 'Canary_54@db.internal': [Errno -2] Name or service not known", "Canary_54"),
    ('could not translate host name "Canary_55@db" to address: Name or service not known', "Canary_55"),
    ('connection to server at "pa@Canary_56@db" (10.0.0.6), port 5432 failed: refused', "Canary_56"),
    ("dsn: host=Canary_59@db port=5432 dbname=app", "Canary_59"),
]

# Text that holds no secret must stay readable.
READABLE = [
    "job_id=42 run=7 duration=0.5",
    "pressed a key on the keyboard",
    "tokens=3 max_tokens=1000",
    "token_type=bearer expires_in=3600",
    "cache_key=jobs:stats primary_key=id",
    "password_file=/run/secrets/db",
    "secret_name=prod-db",
    "connecting to http://db.internal:5432/app",
    "the author=Ann wrote a monkey=1 keyboard",
    "redis://10.0.0.5:6379/0",
    "KeyError: 'job_id'",
    "a:b:c x=1 y=2",
    "auth: ok, author=Ann",
    "a bearer token is required",
    'FATAL:  password authentication failed for user "u"',
    "AKIA starts an access key id; AKIA1234 is too short",
    "ask_live_session_ok, mask_test_value, the ghp_ prefix",
    "failed to resolve host 'db.internal': [Errno -2] Name or service not known",
    'connection to server at "10.0.0.6", port 5432 failed',
    "ops@example.org was paged",
    "GET /services/status HTTP/1.1",
]


@contextlib.contextmanager
def within(seconds: float):
    """Fail, rather than hang, when the body runs past ``seconds``.

    The regex engine checks for signals, so a backtracking pattern is interrupted too.
    """

    def expire(signum, frame):
        raise TimeoutError(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(autouse=True)
def forget_secrets_registered_here():
    """Secrets registered by a test must not leak into other tests of the same process."""
    registered = redaction._secrets
    yield
    redaction._secrets = registered


def timed(function, *args) -> tuple[float, object]:
    begun = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - begun, result


def without_marker(text: str) -> str:
    return re.sub(r"… \[[\d,]+ characters cut\]$", "", text)


@pytest.mark.parametrize(("text", "secret"), SECRET_SHAPES)
def test_the_usual_secret_shapes_are_masked(text, secret):
    masked = redact(text)
    assert secret not in masked
    assert MASK in masked


@pytest.mark.parametrize("text", READABLE)
def test_text_without_secrets_stays_readable(text):
    assert redact(text) == text


def test_masking_keeps_the_key_and_the_scheme_readable():
    assert redact("postgresql://u:hun/ter10@h/db") == f"postgresql://u:{MASK}@h/db"
    assert redact("key AKIAIOSFODNN7EXAMPLE") == f"key AKIA{MASK}"
    assert redact("token ghp_abcdefghijklmnopqrstuvwxyz0123456789") == f"token ghp_{MASK}"
    assert redact("failed to resolve host 'Canary_22@db'") == f"failed to resolve host '{MASK}@db'"
    assert redact('{"password": "hunter5", "user": "ann"}') == f'{{"password": "{MASK}", "user": "ann"}}'
    assert redact("Authorization: Basic dXNlcjpw") == f"Authorization: Basic {MASK}"
    assert redact("?token=abcdef&page=2") == f"?token={MASK}&page=2"
    assert redact("postgresql://u:hun/ter10@h/db") == f"postgresql://u:{MASK}@h/db"


ADVERSARIAL = {
    "x": "x",
    "a:": "a:",
    "header-name": None,  # "A" * 8100 + "(", repeated
    "scheme": "://",
    "at": "@",
    "equals": "=",
    "double-quote": '"',
    "single-quote": "'",
    "colon-scheme": "a://b:",
    "user-at": "u:p@",
    "jwt-ish": "eyJ-",
    "jwt-dots": "eyJaaaaa.",
    "key-equals": "password=",
    "json-key": '"password":',
    "bearer": "Bearer ",
    "pem": "-----BEGIN PRIVATE KEY-----",
    "escaped": '\\"token\\":\\"',
    "ampersand-query": "?token&sig",
    "aws-prefix": "AKIA",
    "github-prefix": "ghp_",
    "github-pat": "github_pat_",
    "slack-prefix": "xoxb-",
    "slack-webhook": "/services/TAAAAAAA/BAAAAAAA/",
    "host-quote": "host '",
    "host-userinfo": "host 'a@",
    "conninfo-host": "host=a@",
}


@pytest.mark.parametrize("size", [10_000, 100_000, 10_000_000])
@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_redact_is_bounded_on_adversarial_input(name, size):
    unit = ADVERSARIAL[name] or "A" * 8100 + "("
    text = (unit * (size // len(unit) + 1))[:size]
    with within(10):
        elapsed, masked = timed(redact, text)
    assert elapsed < 0.5, f"redact took {elapsed:.2f} s on {size:,} characters of {name!r}"
    assert len(masked) <= OUTPUT_BOUND


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_every_pattern_is_linear_even_without_the_cap(name):
    """The cap bounds the cost; the patterns must not need it (200k chars, quadratic would take seconds)."""
    unit = ADVERSARIAL[name] or "A" * 8100 + "("
    text = (unit * (200_000 // len(unit) + 1))[:200_000]
    with within(10):
        elapsed, _ = timed(redaction.mask_patterns, text)
    assert elapsed < 1.0, f"the patterns took {elapsed:.2f} s on 200,000 characters of {name!r}"


def test_a_cut_is_marked_with_how_much_was_cut():
    masked = redact("password=hunter40 " + "x" * 100_000)
    assert masked.startswith(f"password={MASK} ")
    assert masked.endswith("characters cut]")
    cut = int(re.search(r"\[([\d,]+) characters cut\]$", masked)[1].replace(",", ""))
    assert len(without_marker(masked)) - len(MASK) + len("hunter40") + cut == 100_018


def test_many_registered_secrets_do_not_make_redact_slow():
    for number in range(300):
        register_secret(f"registered-secret-{number:04d}-value")
    text = "registered-secret-0150-value " * 40_000
    elapsed, masked = timed(redact, text)
    assert "registered-secret" not in masked
    assert elapsed < 0.5


TRIGGERS = [
    "x",
    "A",
    "a:",
    ":",
    "://",
    "@",
    "=",
    '"',
    "'",
    "\\",
    ".",
    "-",
    "eyJ",
    "(",
    " ",
    "\n",
    "&",
    "?",
    "password",
    "token",
    "Bearer ",
    "Authorization: ",
    "-----BEGIN PRIVATE KEY-----",
    "u:p",
    "AKIA",
    "ghp_",
    "github_pat_",
    "glpat-",
    "xoxb-",
    "sk_live_",
    "host '",
    "server at \"",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    unit=st.lists(st.sampled_from(TRIGGERS), min_size=1, max_size=8).map("".join),
    size=st.integers(min_value=1, max_value=1_000_000),
)
def test_property_redact_finishes_fast_and_bounded_on_trigger_characters(unit, size):
    text = (unit * (size // len(unit) + 1))[:size]
    with within(10):
        elapsed, masked = timed(redact, text)
    assert elapsed < 0.5, f"redact took {elapsed:.2f} s on {size:,} characters of {unit!r}"
    assert len(masked) <= OUTPUT_BOUND


SECRET_TEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=40)
FILLER = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ ,;\n", max_size=200).map(lambda s: s * 100)


@settings(max_examples=100, deadline=None)
@given(secret=SECRET_TEXT, before=FILLER, after=FILLER, offset=st.integers(0, 20_000))
def test_property_a_registered_secret_never_survives_even_at_the_cut(secret, before, after, offset):
    register_secret(secret)
    text = (("P" + before) * (offset // (len(before) + 1) + 1))[:offset] + secret + after
    masked = without_marker(redact(text)).replace(MASK, "")
    leaked = set(masked) & set(secret)
    assert not leaked, f"characters of the secret survived: {sorted(leaked)}"


RECOGNISABLE = [
    "password={}",
    '{{"password": "{}"}}',
    "PGPASSWORD={}",
    "client_secret: {}",
    "postgresql://u:{}@h/db",
    "Authorization: Bearer {}",
    "X-Api-Key: {}",
    "GET /x?access_token={}&page=2",
    "ghp_{}",
    "glpat-{}",
    "xoxb-{}",
    "sk_live_{}",
    "failed to resolve host '{}@db'",
]


@settings(max_examples=100, deadline=None)
@given(
    secret=SECRET_TEXT, shape=st.sampled_from(RECOGNISABLE), before=FILLER, after=FILLER, offset=st.integers(0, 20_000)
)
def test_property_a_recognisable_secret_never_survives(secret, shape, before, after, offset):
    # Hypothesis also tries the module's own strings: a "secret" such as "postgres" is the shape's text (postgresql://).
    own_text = shape.format("")
    assume(secret not in own_text)
    text = (("Q" + before) * (offset // (len(before) + 1) + 1))[:offset] + " " + shape.format(secret) + " " + after
    masked = without_marker(redact(text))
    assert secret not in masked
    assert not any(masked.endswith(secret[:k]) and secret[:k] not in own_text
                   for k in range(3, len(secret))), "a cut left part of the secret"


def record_with(message: str, error: BaseException | None = None) -> logging.LogRecord:
    exc_info = None
    if error is not None:
        try:
            raise error
        except BaseException:
            exc_info = sys.exc_info()
    return logging.LogRecord("gunicorn.error", logging.ERROR, __file__, 1, "%s", (message,), exc_info)


def test_the_log_filter_is_bounded_on_a_huge_message_and_traceback():
    record = record_with("x" * 10_000_000 + " password=hunter41", ValueError("y" * 10_000_000 + " password=hunter41"))
    with within(10):
        elapsed, kept = timed(RedactingFilter().filter, record)
    assert kept
    assert elapsed < 1.0
    assert len(record.msg) <= OUTPUT_BOUND
    assert len(record.exc_text) <= OUTPUT_BOUND
    assert "ValueError" in record.exc_text  # the traceback's head stays useful
    assert "characters cut]" in record.exc_text


def test_the_log_filter_redacts_an_exception_text_formatted_earlier():
    record = record_with("failed")
    record.exc_text = "Traceback ...\nRuntimeError: password=hunter42 " + "z" * 1_000_000
    RedactingFilter().filter(record)
    assert "hunter42" not in record.exc_text
    assert len(record.exc_text) <= OUTPUT_BOUND


def test_the_log_filter_redacts_stack_info():
    record = record_with("failed")
    record.stack_info = "Stack (most recent call last):\n  token=hunter43"
    RedactingFilter().filter(record)
    assert "hunter43" not in record.stack_info


def test_a_header_name_in_gunicorns_error_log_is_cheap_and_stays_readable():
    """Issue 10: header names like "A" * 8100 + "(" reached the masking through gunicorn's error log."""
    message = "Invalid header name " + "A" * 8100 + "("

    def log_once() -> logging.LogRecord:
        record = logging.LogRecord("gunicorn.error", logging.DEBUG, __file__, 1, "%s", (message,), None)
        RedactingFilter().filter(record)
        return record

    with within(10):
        elapsed, records = timed(lambda: [log_once() for _ in range(20)])
    assert elapsed < 0.5, f"20 such lines took {elapsed:.2f} s"
    assert records[0].msg == message
