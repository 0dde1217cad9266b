"""Packaging the provider for a wasmCloud 1.x host: executable, provider archive (PAR), OCI."""
