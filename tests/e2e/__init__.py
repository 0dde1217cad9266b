"""The shipped artifacts end to end: the archive and its executable, the wheel, the Wasm component
through the host shim, the demos, the OCI registry, the conformance table against wash."""
