"""The whole server's streams, shared by its workers (and, later, its nodes)."""
