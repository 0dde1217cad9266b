"""pg-values: PostgreSQL text formats, parameters and rows, and the fast row encoder."""
