"""Operability: what the metrics reporter, the admin API and the `kaleido` commands read from
Redis and PostgreSQL about the health of a deployment (one place, so they all agree)."""
