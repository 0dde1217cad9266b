"""Over real servers started here: PostgreSQL, NATS, PgBouncer, an OTLP receiver; the provider in
process or as a child process."""
