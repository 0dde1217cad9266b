"""Development tooling shared by tests, benches and demos, never shipped: local servers
(NATS, PostgreSQL, PgBouncer, an OCI registry, wash) and the provider as a host runs it."""
