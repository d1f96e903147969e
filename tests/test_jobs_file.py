"""The jobs file: a bad one is refused with one line naming the file, the job and what is wrong.

These are unit tests of ``parse_jobs``/``load_jobs_file``; tests/test_startup_errors.py sends one bad jobs file
through gunicorn to show the same line stops the start with exit 78.
"""

from __future__ import annotations

import time

import pytest

from worker_service.scheduler.jobs_file import JobsFileError, load_jobs_file, parse_jobs

PATH = "/etc/worker-service/jobs.toml"
NOOP = 'func = "tests.support.sample_jobs:noop"\n'

BAD_JOBS = {
    "syntax": ('[jobs.a]\nname = \n', "TOML syntax error: Invalid value (at line 2, column 8)"),
    "trigger": ('[jobs.a]\nfunc = "os:getpid"\ntrigger = "weekly"\n', "job 'a': unknown trigger 'weekly'"),
    "no trigger": ('[jobs.a]\nfunc = "os:getpid"\n', "job 'a': unknown trigger missing"),
    "cron": ('[jobs.a]\nfunc = "os:getpid"\ntrigger = "cron"\nhour = "25"\n', "job 'a': bad cron field hour='25'"),
    "func": ('[jobs.a]\nfunc = "no_such_pkg.mod:run"\ntrigger = "interval"\nseconds = 1\n',
             "job 'a': cannot import func 'no_such_pkg.mod:run'"),
    "func attribute": ('[jobs.a]\nfunc = "os:no_such_thing"\ntrigger = "interval"\nseconds = 1\n',
                       "job 'a': cannot import func 'os:no_such_thing': os has no 'no_such_thing'"),
    "func shape": ('[jobs.a]\nfunc = "os.getpid"\ntrigger = "interval"\nseconds = 1\n',
                   "job 'a': func must look like \"package.module:callable\""),
    "not callable": ('[jobs.a]\nfunc = "os:sep"\ntrigger = "interval"\nseconds = 1\n',
                     "job 'a': func 'os:sep' is not callable"),
    "duplicate": ('[jobs.a]\nfunc = "os:getpid"\ntrigger = "interval"\nseconds = 1\n\n'
                  '[jobs.a]\nfunc = "os:getpid"\ntrigger = "interval"\nseconds = 2\n',
                  "job 'a': duplicate job id (lines 1 and 6)"),
    "negative": ('[jobs.a]\nfunc = "os:getpid"\ntrigger = "interval"\nminutes = -5\n',
                 "job 'a': minutes must not be negative"),
    "no period": ('[jobs.a]\nfunc = "os:getpid"\ntrigger = "interval"\nseconds = 0\n',
                  "job 'a': an interval needs a positive weeks, days, hours, minutes or seconds"),
    "unknown key": ('[jobs.a]\nfunc = "os:getpid"\ntrigger = "interval"\nseconds = 5\ncolour = "red"\n',
                    "job 'a': unknown key 'colour'"),
    "huge interval": ('[jobs.a]\nfunc = "os:getpid"\ntrigger = "interval"\nweeks = 1e300\n',
                      "job 'a': bad interval trigger"),
    "bad id": ('[jobs."a b"]\nfunc = "os:getpid"\ntrigger = "interval"\nseconds = 1\n', "job 'a b': invalid job id"),
    "top-level key": ('colour = "red"\n', "unknown top-level key 'colour'"),
    "max_runtime": ('[jobs.a]\nfunc = "os:getpid"\ntrigger = "interval"\nseconds = 1\nmax_runtime = 0\n',
                    "job 'a': max_runtime must be more than 0 seconds"),
    "run_on": ('[jobs.a]\nfunc = "os:getpid"\ntrigger = "interval"\nseconds = 1\nrun_on = "anywhere"\n',
               'job \'a\': run_on must be "any", "leader" or "every-host"'),
    "retry_lost": ('[jobs.a]\nfunc = "os:getpid"\ntrigger = "interval"\nseconds = 1\nretry_lost = "yes please"\n',
                   "job 'a': retry_lost"),
}


@pytest.mark.parametrize("case", list(BAD_JOBS))
def test_a_bad_jobs_file_is_one_line_naming_the_file_and_the_job(case):
    text, expected = BAD_JOBS[case]
    with pytest.raises(JobsFileError) as caught:
        parse_jobs(text, PATH)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"jobs file {PATH}: ") and expected in message, message


def test_a_good_file_gives_the_jobs_in_file_order_with_their_defaults():
    specs = parse_jobs(f'[jobs.b]\n{NOOP}trigger = "interval"\nminutes = 5\n\n'
                       f'[jobs.a]\n{NOOP}trigger = "cron"\nminute = "*/10"\ncritical = true\n')
    assert [spec.id for spec in specs] == ["b", "a"]
    b, a = specs
    assert (b.name, b.trigger_kind, b.interval_seconds, b.critical, b.max_instances) == ("b", "interval", 300, False, 1)
    assert (a.trigger_kind, a.critical, a.interval_seconds, a.effective_max_runtime) == ("cron", True, None, 600)


def test_where_a_job_runs_defaults_to_any_host_in_a_fleet_and_to_the_one_host_otherwise():
    specs = parse_jobs(f'[jobs.plain]\n{NOOP}trigger = "interval"\nseconds = 5\n\n'
                       f'[jobs.pinned]\n{NOOP}trigger = "interval"\nseconds = 5\nrun_on = "leader"\n\n'
                       f'[jobs.local]\n{NOOP}trigger = "interval"\nseconds = 5\nrun_on = "every-host"\n'
                       'retry_lost = true\n')
    assert [(spec.placement(fleet=True), spec.retry_lost) for spec in specs] == [
        ("any", False), ("leader", False), ("every-host", True)]
    assert {spec.placement(fleet=False) for spec in specs} == {"leader"}  # one host: every run is on it


def test_the_built_in_cleanup_job_runs_on_every_host():
    from worker_service.config import BUILTIN_JOBS_FILE

    specs = {spec.id: spec for spec in load_jobs_file(str(BUILTIN_JOBS_FILE))}
    assert specs["cleanup_temporary_files"].placement(fleet=True) == "every-host"
    assert specs["sync_accounts"].placement(fleet=True) == "any"


def test_a_missing_file_and_a_file_that_is_not_utf8_are_one_line_each(tmp_path):
    missing = tmp_path / "none.toml"
    with pytest.raises(JobsFileError, match=f"^jobs file {missing}: cannot read it: No such file or directory$"):
        load_jobs_file(str(missing))
    latin = tmp_path / "latin.toml"
    latin.write_bytes('[jobs.a]\nname = "Sincronización"\n'.encode("latin-1"))
    with pytest.raises(JobsFileError, match=f"^jobs file {latin}: is not UTF-8 text$"):
        load_jobs_file(str(latin))


def test_editing_what_a_job_runs_or_when_changes_its_fingerprint_and_renaming_it_does_not():
    [base] = parse_jobs(f'[jobs.a]\n{NOOP}trigger = "interval"\nseconds = 30\n')
    [renamed] = parse_jobs(f'[jobs.a]\nname = "Another name"\n{NOOP}trigger = "interval"\nseconds = 30\n')
    [slower] = parse_jobs(f'[jobs.a]\n{NOOP}trigger = "interval"\nseconds = 31\n')
    [other] = parse_jobs('[jobs.a]\nfunc = "tests.support.sample_jobs:always_fail"\ntrigger = "interval"\nseconds = 30\n')
    assert base.fingerprint == renamed.fingerprint
    assert len({base.fingerprint, slower.fingerprint, other.fingerprint}) == 3


# -- the last good copy: a leader that finds the file broken keeps the last good job set ------------------------
def _schedule_settings(tmp_path, path) -> dict:
    return {"WORKER_JOBS_FILE": str(path), "SCHEDULER_TIMEZONE": "UTC", "WORKER_STATE_DIR": str(tmp_path / "state")}


def test_a_broken_file_falls_back_to_the_last_good_copy_and_names_the_problem_until_a_good_load(tmp_path):
    from worker_service.scheduler.jobs_source import load_schedule, problem_reason

    path = tmp_path / "jobs.toml"
    path.write_text('[jobs.a]\n' + NOOP + 'trigger = "interval"\nseconds = 1\n')
    settings = _schedule_settings(tmp_path, path)
    assert [spec.id for spec in load_schedule(settings)] == ["a"]
    assert problem_reason(settings["WORKER_STATE_DIR"], 0) is None

    path.write_text(path.read_text() + "\n[jobs.broken\n")
    assert [spec.id for spec in load_schedule(settings)] == ["a"]  # the last good copy
    reason = problem_reason(settings["WORKER_STATE_DIR"], time.time() + 30)
    assert reason.startswith(f"jobs file {path}: TOML syntax error") and "(30 s ago)" in reason, reason
    assert "the scheduler keeps the last good job set" in reason
    load_schedule(settings)  # broken again, later: still broken since the first time
    assert "(30 s ago)" in problem_reason(settings["WORKER_STATE_DIR"], time.time() + 30)

    path.write_text('[jobs.b]\n' + NOOP + 'trigger = "interval"\nseconds = 2\n')
    assert [spec.id for spec in load_schedule(settings)] == ["b"]
    assert problem_reason(settings["WORKER_STATE_DIR"], 0) is None


def test_a_broken_file_without_a_last_good_copy_still_raises_and_says_so(tmp_path):
    from worker_service.scheduler.jobs_source import load_schedule, problem_reason

    path = tmp_path / "jobs.toml"
    path.write_text("[jobs.broken\n")
    settings = _schedule_settings(tmp_path, path)
    with pytest.raises(JobsFileError, match="TOML syntax error"):
        load_schedule(settings)
    assert problem_reason(settings["WORKER_STATE_DIR"], 0).endswith("no last good copy of it is kept")
