"""Where Leap's reference files live, for tests: ``<repo>/../shared/reference`` (next to the repository)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from openapi_core import OpenAPI

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference"
METERS_SPEC_PATH = REFERENCE_DIR / "leap-openapi" / "meters-v2.yml"
# The spec's servers: a request is validated as if sent to Leap, whatever host the simulator had.
LEAP_SPEC_HOST = "https://api.leap.energy"


@cache
def meters_openapi() -> OpenAPI:
    """Leap's Meters v2 OpenAPI file, parsed once per test session."""
    if not METERS_SPEC_PATH.is_file():
        raise FileNotFoundError(f"Leap's Meters v2 OpenAPI file is missing: {METERS_SPEC_PATH}")
    return OpenAPI.from_file_path(str(METERS_SPEC_PATH))
