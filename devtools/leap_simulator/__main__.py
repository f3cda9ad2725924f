"""Run the simulator by hand: ``python -m devtools.leap_simulator --days 10`` then curl the printed URL."""

from __future__ import annotations

import argparse
import contextlib
import threading

from devtools.leap_simulator.simulator import DEFAULT_API_KEY, LeapSimulator
from leap_tracker.leap import wire


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Serve a simulated Leap Connect + Meters v2 + Webhook Subscription API on 127.0.0.1."
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument(
        "--days", type=float, default=10.0, help="simulated days after the start to answer at"
    )
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    args = parser.parse_args()
    with LeapSimulator(seed=args.seed, customers=args.customers, api_key=args.api_key) as sim:
        sim.advance(days=args.days)
        print(f"Leap simulator at {sim.base_url} (simulated time {sim.now:%Y-%m-%dT%H:%M:%SZ})")
        names = sim.connect_wire
        auth = f"{wire.AUTH_HEADER}: {wire.AUTH_SCHEME} {sim.api_key}"
        print(f"  curl -H '{auth}' '{sim.base_url}{names.path}?{names.param_page_size}=5'")
        print("Ctrl-C to stop.")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
