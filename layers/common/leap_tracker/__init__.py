"""leap-connect-tracker's domain package: pure logic and the adapters around it (shipped in the layer)."""
