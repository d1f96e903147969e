"""Alert settings, the jobs file's alert keys, channel URLs masked and their secrets registered, the backoff."""

from __future__ import annotations

import random

import pytest

from common.helpers.health import redact
from worker_service.alerts.deliverer import RETRY_CAP, backoff
from worker_service.channel_urls import mask_channel_url
from worker_service.config import ConfigError, load_settings
from worker_service.scheduler.jobs_file import JobsFileError, parse_jobs

JOB = """
[jobs.a]
func = "tests.support.sample_jobs:noop"
trigger = "interval"
seconds = 60
"""


@pytest.mark.parametrize(("url", "shown"), [
    ("https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX", "https://hooks.slack.com/***"),
    ("https://ops:pa55word@alerts.example.com/hook?token=abcdefgh123", "https://***@alerts.example.com/***"),
    ("mailtos://oncall:s3cretpass@smtp.example.com?to=ops@example.com", "mailtos://***@smtp.example.com/***"),
    ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general", "slack://***"),
    ("tgram://123456789:AAHkBotTokenValue0123/987654", "tgram://***"),
    ("json://127.0.0.1:8080", "json://127.0.0.1:8080"),
])
def test_a_channel_url_is_shown_without_its_tokens_and_its_secrets_are_masked_in_any_text(state_dir, url, shown):
    assert mask_channel_url(url) == shown
    load_settings({"WORKER_STATE_DIR": str(state_dir), "ALERT_APPRISE_URLS": url})
    logged = redact(f"apprise failed to notify {url}: connection refused")
    for secret in ("XXXXXXXXXXXXXXXX", "pa55word", "abcdefgh123", "s3cretpass", "TIiajkdnlazkcOXrIdevi7FQ",
                   "AAHkBotTokenValue0123"):
        assert secret not in logged


@pytest.mark.parametrize(("env", "expected"), [
    ({"ALERT_WEBHOOK_URLS": "ftp://hooks.example.com/x"}, "ALERT_WEBHOOK_URLS must be a URL starting with http://"),
    ({"ALERT_APPRISE_URLS": "not a url"}, "ALERT_APPRISE_URLS must be Apprise URLs"),
    ({"ALERT_ON": "sometimes"}, "ALERT_ON='sometimes'"),
    ({"ALERT_WEBHOOK_SECRET": "short"}, "ALERT_WEBHOOK_SECRET must be at least 8 characters"),
    ({"ALERT_DISK_PERCENT": "101"}, "ALERT_DISK_PERCENT='101' must be between 0 and 100"),
])
def test_a_bad_alert_setting_is_one_line_naming_it(state_dir, env, expected):
    with pytest.raises(ConfigError) as caught:
        load_settings({"WORKER_STATE_DIR": str(state_dir), **env})
    assert expected in str(caught.value)
    assert "hooks.example.com/x" not in str(caught.value)  # a channel URL is a secret: never echoed


def test_the_jobs_file_takes_alert_keys_and_refuses_bad_ones():
    [job] = parse_jobs(JOB + "alert = false\nalert_after_failures = 5\nalert_after_recoveries = 2\n")
    assert (job.alert, job.alert_after_failures, job.alert_after_recoveries) == (False, 5, 2)
    [default] = parse_jobs(JOB)
    assert (default.alert, default.alert_after_failures, default.alert_after_recoveries) == (True, None, 1)
    with pytest.raises(JobsFileError, match="alert_after_failures must be 1 or more"):
        parse_jobs(JOB + "alert_after_failures = 0\n")


def test_backoff_doubles_with_jitter_and_is_capped():
    rng = random.Random(7)
    for attempts in range(1, 30):
        ceiling = min(2 ** (attempts - 1), RETRY_CAP)
        assert ceiling / 2 <= backoff(attempts, rng) <= ceiling
    # retried for ALERT_RETRY_FOR (20 min by default): the tries fill it, at most RETRY_CAP apart
    waits, total = [], 0.0
    while total < 1200:
        waits.append(backoff(len(waits) + 1, rng))
        total += waits[-1]
    assert 10 <= len(waits) <= 40
