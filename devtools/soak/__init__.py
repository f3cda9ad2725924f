"""The fault soak: the whole product through the local runner for simulated days while seeded faults
hit every boundary (Leap, AWS calls, Lambda, the partner's webhook), and invariants over what was
observed that prove nothing was lost or doubled (docs/soak.md).

- ``plan``: the fault kinds and the seeded plan, hour by hour;
- ``timeline``: what was injected when, to show around a violation;
- ``injectors``: how each fault is applied (a botocore hook, handler wrappers, the simulator's and the
  webhook receiver's faults, simulated time that passes during a call);
- ``observe``: what the run collected;
- ``invariants``: pure functions over the observations;
- ``driver``: one seed, hour by hour; ``plants``: bugs planted at runtime to show the soak fails;
- ``cli``: ``python -m devtools.soak --seeds N --hours H``.
"""
