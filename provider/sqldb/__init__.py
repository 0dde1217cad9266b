"""The provider itself: lattice hooks serving wasmcloud:postgres from the PostgreSQL service."""
