"""Small helpers every layer may use: slots, bounded tables, secret redaction."""
