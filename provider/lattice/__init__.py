"""The provider SDK: HostData, links and their secrets, the lattice connection, the runtime that
calls a provider's hooks; nothing here knows PostgreSQL."""
