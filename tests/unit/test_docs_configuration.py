"""The README's configuration table is the partner's reference: it must name every variable the code
reads, with the default the code applies, and every variable it marks as set by the template (**T**)
must really be set there."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

from devtools.template_tables import template
from leap_tracker.config import VARIABLES, field_default, load_settings

REPO = Path(__file__).resolve().parents[2]


class _RecordingEnviron(dict[str, str]):
    """An empty environment that notes every variable asked of it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)


def _variables_read_by_config() -> set[str]:
    """The variables of config's table, and any other one load_settings asks for (the Connect wire's)."""
    environ = _RecordingEnviron()
    load_settings(environ)
    return environ.asked | {variable.name for table in VARIABLES.values() for variable in table.values()}


def _defaults_in_code() -> dict[str, Any]:
    """Variable name -> the default of the settings field it sets (the one place defaults are written)."""
    return {
        table[spec.name].name: field_default(spec)
        for settings, table in VARIABLES.items()
        for spec in fields(settings)
        if spec.name in table
    }


def _as_documented(value: Any) -> str:
    """How the README's table writes a default: the text a partner would set the variable to."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, frozenset):
        return ",".join(sorted(value))
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def _readme_defaults() -> dict[str, str]:
    """Variable name -> its default cell, split per name where one row has several (`A` / `B`)."""
    defaults: dict[str, str] = {}
    for line in (REPO / "README.md").read_text().splitlines():
        if not line.startswith("| `"):
            continue
        names = re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1])
        cells = (
            [cell.strip() for cell in line.split("|")[2].split(" / ")]
            if len(names) > 1
            else [line.split("|")[2].strip()]
        )
        assert len(cells) == len(names), f"one default per variable in: {line}"
        defaults.update(zip(names, cells, strict=True))
    return defaults


def _readme_rows() -> dict[str, bool]:
    """Variable name -> marked **T**, for every row of the README's configuration table."""
    rows: dict[str, bool] = {}
    for line in (REPO / "README.md").read_text().splitlines():
        if not line.startswith("| `"):
            continue
        first_cell = line.split("|")[1]
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell):
            rows[name] = "**T**" in first_cell
    return rows


def _template_environment() -> set[str]:
    declared = template()
    names = set(declared["Globals"]["Function"]["Environment"]["Variables"])
    for resource in declared["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            names |= set(resource["Properties"].get("Environment", {}).get("Variables", {}))
    return names


def test_every_variable_the_code_reads_is_documented() -> None:
    missing = _variables_read_by_config() - set(_readme_rows())
    assert not missing, f"README's configuration table misses {sorted(missing)}"


def test_the_readme_documents_no_variable_that_does_not_exist() -> None:
    powertools = {name for name in _readme_rows() if name.startswith("POWERTOOLS_")}
    unknown = set(_readme_rows()) - _variables_read_by_config() - powertools
    assert not unknown, f"README documents variables nothing reads: {sorted(unknown)}"


def test_variables_marked_as_set_by_the_template_are_set_there() -> None:
    marked = {name for name, by_template in _readme_rows().items() if by_template}
    assert marked <= _template_environment(), sorted(marked - _template_environment())
    unmarked = {name for name, by_template in _readme_rows().items() if not by_template}
    assert not unmarked & _template_environment(), sorted(unmarked & _template_environment())


def test_the_readme_gives_each_variable_the_default_the_code_applies() -> None:
    documented = _readme_defaults()
    wrong = {}
    for name, default in _defaults_in_code().items():
        # An empty default is written as an empty cell or a note such as "(required)".
        expected = f"`{_as_documented(default)}`" if _as_documented(default) else None
        cell = documented[name]
        if (expected is None and "`" in cell) or (expected is not None and cell != expected):
            wrong[name] = (cell, expected or "(empty or a note)")
    assert not wrong, f"README default differs from config.py (README, code): {wrong}"
