"""The import graph of worker_service/ and common/: no cycle, no import of a layer above (scripts/check-imports)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "check-imports"


def _load_checker():
    loader = importlib.machinery.SourceFileLoader("check_imports", str(SCRIPT))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


checker = _load_checker()


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return checker.without(checker.import_graph())


def test_no_module_of_worker_service_or_common_is_part_of_an_import_cycle(graph):
    assert checker.cycles(graph) == []


def test_every_module_has_a_layer_and_imports_none_above_its_own(graph):
    assert checker.layer_violations(graph) == []


def test_common_health_helpers_import_nothing_from_worker_service(graph):
    assert checker.independence_violations(graph) == []
    assert any(module.startswith("common.helpers.health.") for module in graph)  # the walk did see them


def test_metrics_imports_nothing_of_status_and_both_read_the_reporting_layer(graph):
    metrics = {module for module in graph if module.startswith("worker_service.metrics")}
    assert metrics and not any(target.startswith("worker_service.status") for m in metrics for target in graph[m])
    assert "worker_service.access" in graph["worker_service.metrics"]
    assert "worker_service.access" in graph["worker_service.status.views"]


def test_the_script_prints_its_summary_and_exits_0_on_this_tree():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "modules" in done.stdout and "edges" in done.stdout and "common < base" in done.stdout
    assert done.stdout.rstrip().endswith("no cycle, no upward import")


# -- the checker itself, on small trees ----------------------------------------------------------------------------
def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


LAYERS = (("low", ("app.low",)), ("high", ("app.high", "=app")))


def test_the_checker_finds_a_cycle_through_a_deferred_relative_import(tmp_path):
    root = _tree(tmp_path, {"app/__init__.py": "", "app/low.py": "from .high import thing\n",
                            "app/high.py": "def f():\n    from . import low\n"})
    assert checker.cycles(checker.import_graph(root, ["app"])) == [["app.high", "app.low"]]


def test_the_checker_finds_an_upward_import_and_a_module_in_no_layer(tmp_path):
    root = _tree(tmp_path, {"app/__init__.py": "", "app/low.py": "import app.high\n", "app/high.py": "",
                            "app/stray.py": ""})
    problems = checker.layer_violations(checker.import_graph(root, ["app"]), LAYERS)
    assert problems == ["app.stray is in no layer: add it to LAYERS in scripts/check-imports",
                        "app.low (low) imports app.high (high), a layer above it"]


def test_an_exact_pattern_names_the_package_root_only(tmp_path):
    assert checker.layer_of("app", LAYERS) == 1
    assert checker.layer_of("app.low.deep", LAYERS) == 0
    assert checker.layer_of("app.other", LAYERS) is None
