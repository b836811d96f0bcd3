-- Views taken while Redis was unreachable or out of memory. The primary key deduplicates them
-- across processes; they are replayed through Redis' own dedup once it is back, so a view seen
-- before the outage is not counted twice. `replay_batch` marks rows being replayed.
CREATE TABLE view_journal (
    user_id       bigint NOT NULL,
    post_id       bigint NOT NULL,
    viewed_at     timestamptz NOT NULL DEFAULT now(),
    replay_batch  uuid,
    PRIMARY KEY (user_id, post_id)
);
CREATE INDEX view_journal_post_id ON view_journal (post_id);
CREATE INDEX view_journal_replay_batch ON view_journal (replay_batch)
    WHERE replay_batch IS NOT NULL;
