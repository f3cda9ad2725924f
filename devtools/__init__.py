"""Development tools (the Leap simulator, the local runner): never shipped in the Lambda layer."""
