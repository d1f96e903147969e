"""worker-service benchmark: /health and /status against a bare-Flask floor and py-healthcheck, on loopback.

Usage (what ``make bench`` runs):

    .venv/bin/python bench/run.py            # full run, about 23 minutes, writes bench/results.md
    .venv/bin/python bench/run.py --quick    # smoke run (5 s wrk runs, 60 s soak), writes bench/out/results-quick.md

    .venv/bin/python bench/run.py --ref HEAD # pin one commit (a `git archive` snapshot), e.g. while others edit the tree

Options: --only health,hung,status,status_cost,tracking,failover,memory,fleet  --rounds N  --duration S
--sweep-duration S  --soak S  --tries N  --out FILE  --ref REF  --no-install  (see --help).

Every server is a real gunicorn on 127.0.0.1 with 2 workers x 4 threads (gthread):

* ours:  gunicorn -c gunicorn.conf.py --chdir <repo> wsgi:app, WEB_CONCURRENCY=2 GUNICORN_THREADS=4
* floor: gunicorn -k gthread -w 2 --threads 4 --keep-alive 5 (+ the same access-log format) bench/floor_app.py
* peer:  the same flags, bench/peer_app.py (py-healthcheck, Redis PING + PostgreSQL SELECT 1)

Load comes from wrk (-t2 -c16, --latency, bench/wrk_report.lua prints the figures as JSON). Runs are
interleaved (the order rotates every round), each keep-alive run records how wrk's connections were
split between the two workers (``ss -tnp``) and is rerun when one worker holds more than 75 %; every run
also records each worker's share of CPU time, which works with Connection: close too. Each process this
script starts is stopped by its PID, on success, error or Ctrl-C. Logs go to bench/out/<timestamp>/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lib import report  # noqa: E402
from bench.lib.processes import (  # noqa: E402
    BENCH,
    REGISTRY,
    SOURCE,
    access_log_format,
    ensure_peer,
    log,
    preflight,
    snapshot,
)
from bench.lib.scenarios import SCENARIOS, Bench  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="worker-service benchmark (see the module docstring)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 s wrk runs, 3 s sweep runs, 60 s soak, 3 tries")
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--duration", type=float, help="seconds per wrk run in scenarios 1-3a (default 10, quick 5)")
    parser.add_argument("--sweep-duration", type=float, help="seconds per run of the 10/100/1000 sweep and the "
                        "one-connection runs (default 5, quick 3)")
    parser.add_argument("--peer-duration", type=float, help="seconds per py-healthcheck run with Redis hung (default 10, quick 5)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per app before the rounds (default 2, quick 1)")
    parser.add_argument("--soak", type=float, help="seconds of load in the memory scenario (default 600, quick 60)")
    parser.add_argument("--tries", type=int, help="failover tries per signal (default 5, quick 3)")
    parser.add_argument("--tracking-runs", type=int, help="job runs timed in scenario 4 (default 5000, quick 2000)")
    parser.add_argument("--out", type=Path, help="markdown output (default bench/results.md; quick: bench/out/results-quick.md)")
    parser.add_argument("--no-install", action="store_true", help="do not pip-install py-healthcheck when missing")
    parser.add_argument("--keep-access-logs", action="store_true", help="keep each server's access log (stdout) in "
                        "bench/out/<timestamp>/ (deleted when the server stops otherwise: gigabytes in a full run)")
    parser.add_argument("--ref", help="benchmark this commit (e.g. HEAD): a `git archive` snapshot in a temp dir, so "
                        "edits made to the tree during the run do not change what is measured (default: the working tree)")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {"duration": (10, 5), "sweep_duration": (5, 3), "peer_duration": (10, 5), "warmup": (2, 1),
                "soak": (600, 60), "tries": (5, 3), "tracking_runs": (5000, 2000)}
    for name, (full, short) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, short if quick else full)
    if args.out is None:
        args.out = BENCH / "out" / "results-quick.md" if quick else BENCH / "results.md"
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return args



def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    SOURCE.keep_access_logs = args.keep_access_logs
    preflight()
    ensure_peer(not args.no_install)
    commit = None
    source_dir = None
    if args.ref:  # before anything imports worker_service: this process uses the snapshot too
        source_dir = Path(tempfile.mkdtemp(prefix="ws-bench-src-"))
        commit = snapshot(args.ref, source_dir / "src")
        SOURCE.root = source_dir / "src"
        sys.path.insert(0, str(SOURCE.root))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE.root), os.environ.get("PYTHONPATH")]))
        log(f"benchmarking {args.ref} = {commit} from {SOURCE.root}")
    SOURCE.access_log_format = access_log_format()

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # Also SIGINT: a shell starts background jobs with SIGINT ignored, and Ctrl-C / kill -INT must still clean up.
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    bench = Bench(args)
    bench.commit = commit
    log(f"logs in {bench.logdir}; scenarios: {', '.join(args.only)}")
    complete, error = False, None
    try:
        for name in SCENARIOS:
            if name in args.only:
                getattr(bench, name)()
        complete = True
    except KeyboardInterrupt:
        error = "interrupted"
        log("interrupted: stopping everything")
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        REGISTRY.cleanup()
        try:
            report.write(bench, args.out, complete, error)
        except Exception:
            traceback.print_exc()
        shutil.rmtree(bench.tmp, ignore_errors=True)
        if source_dir:
            shutil.rmtree(source_dir, ignore_errors=True)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
