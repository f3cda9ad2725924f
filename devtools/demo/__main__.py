"""``python -m devtools.demo`` (``make demo``): see devtools/demo/__init__.py and docs/demo.md."""

from devtools.demo.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
