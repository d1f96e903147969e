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


def test_no_package_of_worker_service_or_common_is_part_of_an_import_cycle(graph):
    assert checker.cycles(checker.package_graph(graph)) == []


def test_the_importlib_loads_of_the_gunicorn_wiring_are_edges(graph):
    assert {"worker_service.gunicorn.hooks", "worker_service.gunicorn.master"} <= graph["worker_service.gunicorn.conf"]
    assert "worker_service.logfmt" in graph["worker_service.gunicorn.master"]  # load_sibling("logfmt")


def test_every_exception_names_a_module_or_an_import_that_exists():
    assert checker.stale_exceptions(checker.import_graph()) == []


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
    assert done.stdout.rstrip().endswith("no cycle of modules or packages, no upward import")


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


def test_the_checker_finds_a_cycle_of_two_packages_that_no_two_modules_form(tmp_path):
    root = _tree(tmp_path, {"app/__init__.py": "", "app/status/__init__.py": "", "app/control/__init__.py": "",
                            "app/status/openapi.py": "from ..control import paths\n", "app/control/paths.py": "",
                            "app/control/reads.py": "from app.status.analysis import entry\n",
                            "app/status/analysis.py": "entry = 1\n", "app/config.py": "",
                            "app/status/views.py": "from .. import config\n"})
    graph = checker.import_graph(root, ["app"])
    assert checker.cycles(graph) == []
    assert checker.cycles(checker.package_graph(graph, ["app"], {})) == [["app.control", "app.status"]]


def test_a_module_placed_apart_from_its_package_is_its_own_unit_and_layer(tmp_path):
    root = _tree(tmp_path, {"app/__init__.py": "", "app/low.py": "from .wiring import master\n",
                            "app/wiring/__init__.py": "", "app/wiring/master.py": "",
                            "app/wiring/hooks.py": "from .. import low\n"})
    graph = checker.import_graph(root, ["app"])
    placed = {"app.wiring.hooks": ("high", "built on the low layer")}
    assert checker.cycles(checker.package_graph(graph, ["app"], {})) == [["app.low", "app.wiring"]]
    assert checker.cycles(checker.package_graph(graph, ["app"], placed)) == []
    assert checker.layer_of("app.wiring.hooks", LAYERS, placed) == 1


def test_the_checker_counts_importlib_loads_written_out(tmp_path):
    root = _tree(tmp_path, {"app/__init__.py": "", "app/low.py": "",
                            "app/high.py": "import importlib\nimportlib.import_module('app.low')\n",
                            "app/conf.py": "spec_from_file_location('m', os.path.join(here, 'master.py'))\n"
                                           "from importlib import import_module\nimport_module('.high', __package__)\n",
                            "app/master.py": "load_sibling('low')\n",
                            "app/lazy/__init__.py": "_LAZY = {'Store': 'pg_store'}\n"
                                                    "def __getattr__(name):\n"
                                                    "    return import_module(f'.{_LAZY[name]}', __name__)\n",
                            "app/lazy/pg_store.py": "from . import helpers\n", "app/lazy/helpers.py": ""})
    graph = checker.import_graph(root, ["app"], {"load_sibling": "app"})
    assert graph["app.high"] == {"app.low"} and graph["app.master"] == {"app.low"}
    assert graph["app.conf"] == {"app.master", "app.high"}
    assert graph["app.lazy"] == {"app.lazy.pg_store"}


def test_an_exception_that_names_nothing_is_reported():
    graph = {"app.a": {"app.b"}, "app.b": set()}
    assert checker.stale_exceptions(graph, {"app.gone": ("low", "why")}, {("app.b", "app.a"): "why"}) == [
        "MODULE_LAYERS names app.gone, which does not exist", "EXCEPTIONS names app.b -> app.a, which is no import"]
