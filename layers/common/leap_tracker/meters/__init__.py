"""Meter watches: after a connection completes, wait for its meters on Leap's Meters API.

- :mod:`.model`: the watch record;
- :mod:`.schedule`: when to check, when a watch is overdue, when to give up (pure rules);
- :mod:`.matching`: one Meters search for up to 100 watches, and its meters mapped back to them;
- :mod:`.events`: the ``meter.*`` CloudEvents;
- :mod:`.opening`: a ``connection.completed`` event opens a watch (idempotently);
- :mod:`.sweep`: the scheduled sweep over the due watches.

docs/meters.md explains the behaviour for partners and operators.
"""
