"""Post view counting: atomic 24 h dedup in Redis, exactly-once sync to PostgreSQL."""
