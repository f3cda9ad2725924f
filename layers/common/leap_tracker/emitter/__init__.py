"""The emitter stage: table stream records -> typed CloudEvents on the events topic, in order."""
