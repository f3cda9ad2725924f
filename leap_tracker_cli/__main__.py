"""``python -m leap_tracker_cli``: the same as the ``leap-tracker`` console script."""

from leap_tracker_cli.main import main

raise SystemExit(main())
