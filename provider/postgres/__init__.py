"""PostgreSQL behind the four wasmcloud:postgres functions and the transactions: links, pools,
statements and their retries; nothing here knows NATS."""
