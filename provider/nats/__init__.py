"""NATS: the protocol's wire format (sans-IO) and the lean data connection calls travel on."""
