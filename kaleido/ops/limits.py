"""Thresholds shared by the metrics reporter's alerts, `kaleido doctor` and `kaleido top`, so
that a log warning, a doctor finding and a red figure on the dashboard mean the same thing."""

from __future__ import annotations

# Redis evicts (or refuses writes) at maxmemory: warn with room left to act.
MEMORY_WARNING = 0.8
# Past this, the next burst of views may hit OOM (views then go to PostgreSQL).
MEMORY_PROBLEM = 0.95
# Undelivered entries of one group; far above a healthy backlog (a few batches of 256).
LAG_LIMIT = 10_000
# A consumer silent this long while holding pending entries is probably dead (reclaim is 60 s).
IDLE_LIMIT = 300.0
# A pending entry this old is stuck: reclaim would have retried it many times by now.
PENDING_AGE_LIMIT = 600.0
# No good sync for this many sync intervals is an incident.
STALE_SYNC_INTERVALS = 3
# The relay publishes within a second unless Redis fails it: an announcement this old waits
# for Redis (the ML service hears of nothing meanwhile).
OUTBOX_AGE_LIMIT = 60.0
# A console sign-in lasts this long (kaleido.http.console.session); the sessions hash expires
# then after the newest, which `kaleido doctor` checks.
SESSION_LIFETIME = 12 * 3600
