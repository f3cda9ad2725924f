"""The README's configuration table is the partner's reference: it must name every variable the code
reads, and every variable it marks as set by the template (**T**) must really be set there."""

from __future__ import annotations

import re
from pathlib import Path

from devtools.template_tables import template

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "layers" / "common" / "leap_tracker" / "config.py"


def _variables_read_by_config() -> set[str]:
    return set(re.findall(r'env\.(?:str|int|float|bool|csv)\(\s*"([A-Z0-9_]+)"', CONFIG.read_text()))


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
