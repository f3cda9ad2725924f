"""Run the simulator by hand: ``python -m devtools.leap_simulator --days 10`` then curl the printed URL."""

from __future__ import annotations

import argparse
import contextlib
import threading
from typing import get_args

from devtools.leap_simulator.simulator import DEFAULT_API_KEY, LeapSimulator, ListingOrder
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
    parser.add_argument(
        "--listing-order",
        choices=get_args(ListingOrder),
        default="index",
        help="how the Connect list orders the customers: population index, or start date (click time)",
    )
    parser.add_argument(
        "--page-latency-ms",
        type=float,
        default=0.0,
        help="the least time a Connect answer takes, its building included (0: as fast as it can)",
    )
    args = parser.parse_args()
    simulator = LeapSimulator(
        seed=args.seed,
        customers=args.customers,
        api_key=args.api_key,
        listing_order=args.listing_order,
        page_latency_ms=args.page_latency_ms,
    )
    with simulator as sim:
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
