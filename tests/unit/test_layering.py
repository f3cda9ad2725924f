"""What each layer may import (docs/architecture.md#what-each-layer-may-import), checked on the source.

Domain modules are every module of ``leap_tracker`` outside ``adapters/``, and ``config.py`` follows the
same import rules (it is only allowed to read the environment). Because the shared modules obey them
too, the rules hold transitively: nothing a domain module imports can bring in boto3 either.
"""

from __future__ import annotations

import ast
import importlib
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "layers" / "common" / "leap_tracker"

CONFIG = "config.py"  # the one reader of the environment
AWS_AND_HTTP = ("boto3", "botocore", "requests", "urllib3")
ADAPTERS = "leap_tracker.adapters"
# The repo's other top-level packages; leap_tracker_cli is the operator's command (pyproject's scripts),
# subscriber the partner's kit (its own stack and sample consumer).
NOT_SHIPPED = ("functions", "devtools", "tests", "bench", "leap_tracker_cli", "subscriber")
ENVIRONMENT = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}  # attributes of os
ENVIRONMENT_IMPORTS = (*(f"os.{name}" for name in sorted(ENVIRONMENT)), "os.*")
# Powertools in the domain: its Logger anywhere (log lines only: metrics go to the handler, through the
# domain's results or a port), and, in the emitter's in-order processor, the batch processor's base class
# and the stream record it hands over. Nothing else: metrics, tracer and parameters (which calls AWS)
# stay with the handlers and adapters.
POWERTOOLS = "aws_lambda_powertools"
POWERTOOLS_IN_DOMAIN = ("aws_lambda_powertools.Logger", "aws_lambda_powertools.logging")
POWERTOOLS_BY_MODULE = {
    "emitter/processor.py": (
        "aws_lambda_powertools.utilities.batch",
        "aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event",
    ),
}


def _within(name: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _imports(tree: ast.Module, module: str) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything imported anywhere in the module, relative imports resolved."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level]
                base = ".".join([*package, base] if base else package)
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _environment_reads(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, "os.<attribute>") for each use of the environment through a name bound to ``os``."""
    os_names = {
        alias.asname or "os"
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name == "os" or (alias.name.startswith("os.") and alias.asname is None)
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in os_names
            and node.attr in ENVIRONMENT
        ):
            yield node.lineno, f"os.{node.attr}"


def violations(package: Path) -> list[str]:
    """Every broken layering rule in the ``leap_tracker`` package at ``package``, one line each."""
    found = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        module = ".".join(["leap_tracker", *path.relative_to(package).with_suffix("").parts])
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found += [
            f"leap_tracker/{relative}:{line}: {why}" for line, why in _broken_rules(relative, module, tree)
        ]
    return found


def _broken_rules(relative: str, module: str, tree: ast.Module) -> Iterator[tuple[int, str]]:
    is_adapter = relative.startswith("adapters/")
    for line, name in _imports(tree, module):
        if _within(name, NOT_SHIPPED):
            yield line, f"imports {name}: {', '.join(NOT_SHIPPED)} never ship in the layer"
        if relative != CONFIG and _within(name, ENVIRONMENT_IMPORTS):
            yield line, f"imports {name}: only config.py reads the environment"
        if is_adapter:
            continue
        if _within(name, AWS_AND_HTTP):
            yield line, f"imports {name}: only adapters/ use AWS or HTTP clients"
        if _within(name, ADAPTERS):
            yield line, f"imports {name}: the domain reaches adapters through its ports"
        allowed = POWERTOOLS_IN_DOMAIN + POWERTOOLS_BY_MODULE.get(relative, ())
        if _within(name, POWERTOOLS) and not _within(name, allowed):
            yield line, f"imports {name}: of Powertools the domain may use only {', '.join(allowed)}"
    if relative != CONFIG:
        for line, read in _environment_reads(tree):
            yield line, f"reads {read}: only config.py reads the environment"


def test_the_layer_keeps_its_layering_rules() -> None:
    assert violations(PACKAGE) == []


def test_the_check_sees_the_whole_package() -> None:
    # A moved package must not make the check pass by finding nothing.
    modules = {path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")}
    assert {"poller/run.py", "emitter/processor.py", "events/diff.py", "adapters/poller_store.py"} <= modules
    assert {"poller", "emitter", "events", "leap", "outreach", "meters", "adapters"} <= {
        path.parent.name for path in PACKAGE.rglob("__init__.py")
    }


def test_the_operators_command_is_a_console_script_outside_the_layer() -> None:
    # The layer is layers/common (template.yaml's CommonLayer ContentUri): the command must not be in it.
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    module, function = project["project"]["scripts"]["leap-tracker"].split(":")

    assert module.split(".")[0] == "leap_tracker_cli"
    assert (REPO / "leap_tracker_cli" / "main.py").is_file()
    assert not list((REPO / "layers").rglob("leap_tracker_cli"))
    assert callable(getattr(importlib.import_module(module), function))


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """A copy of the real package to plant violations in (the real tree is never touched)."""
    copy = tmp_path / "leap_tracker"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _plant(package: Path, module: str, code: str) -> int:
    """Append ``code`` to ``module``; the line number of its last line."""
    path = package / module
    source = path.read_text(encoding="utf-8").rstrip("\n") + "\n\n" + code + "\n"
    path.write_text(source, encoding="utf-8")
    return source.count("\n")


@pytest.mark.parametrize(
    ("module", "code", "reported"),
    [
        ("poller/changes.py", "import boto3", "imports boto3: only adapters/ use AWS or HTTP clients"),
        ("events/diff.py", "from botocore.exceptions import ClientError", "imports botocore.exceptions"),
        ("outreach/service.py", "import requests", "imports requests: only adapters/ use AWS"),
        ("leap/connect_model.py", "from urllib3.util import Retry", "imports urllib3.util.Retry"),
        ("poller/run.py", "import os\nKEY = os.environ['LEAP_API_KEY']", "reads os.environ"),
        ("meters/sweep.py", "import os as system\nKEY = system.getenv('X')", "reads os.getenv"),
        ("table.py", "from os import environ", "imports os.environ: only config.py reads the environment"),
        ("adapters/webhook.py", "import os\nURL = os.environ.get('X')", "reads os.environ: only config.py"),
        (
            "poller/run.py",
            "from leap_tracker.adapters.poller_store import DynamoPollerStore",
            "imports leap_tracker.adapters.poller_store.DynamoPollerStore: the domain reaches adapters",
        ),
        (
            "emitter/stream.py",
            "from ..adapters import sns_publisher",
            "imports leap_tracker.adapters.sns_publisher",
        ),
        (
            "meters/sweep.py",
            "from aws_lambda_powertools import Metrics",
            "imports aws_lambda_powertools.Metrics",
        ),
        (
            "poller/run.py",
            "from aws_lambda_powertools.utilities.batch import BatchProcessor",
            "imports aws_lambda_powertools.utilities.batch.BatchProcessor: of Powertools the domain may use",
        ),
        (
            "outreach/service.py",
            "from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord",
            "imports aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event.DynamoDBRecord: of",
        ),
        ("adapters/aws.py", "from devtools import demo", "imports devtools.demo: functions, devtools, tests"),
        ("events/catalog.py", "import tests.fakes", "imports tests.fakes: functions, devtools, tests, bench"),
        ("privacy.py", "from leap_tracker_cli import main", "imports leap_tracker_cli.main: functions,"),
    ],
)
def test_a_planted_violation_is_reported(package_copy: Path, module: str, code: str, reported: str) -> None:
    line = _plant(package_copy, module, code)

    found = violations(package_copy)

    assert len(found) == 1, found
    assert found[0].startswith(f"leap_tracker/{module}:{line}: ")
    assert reported in found[0]


@pytest.mark.parametrize(
    ("module", "code"),
    [
        ("adapters/aws.py", "import boto3\nimport requests"),  # adapters talk to AWS and HTTP
        ("config.py", "import os\nVALUE = os.environ.get('X')"),  # the one reader of the environment
        ("outreach/service.py", "from aws_lambda_powertools import Logger"),  # log lines
        ("emitter/processor.py", "from aws_lambda_powertools.utilities.batch import BasePartialProcessor"),
        (
            "meters/sweep.py",
            "import os.path\nHERE = os.path.dirname('x')",
        ),  # os itself is not the environment
    ],
)
def test_what_the_rules_allow_is_not_reported(package_copy: Path, module: str, code: str) -> None:
    _plant(package_copy, module, code)

    assert violations(package_copy) == []
