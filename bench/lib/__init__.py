"""The benchmark behind bench/run.py: processes, the wrk driver, the scenarios, the report."""
