"""wRPC over NATS: message framing, and the server and client of one call each way."""
