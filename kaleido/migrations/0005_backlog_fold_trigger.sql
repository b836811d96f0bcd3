-- Views synced before their post had a row wait in post_view_backlog. Whoever creates the post
-- (Kaleido's POST /v1/posts or the Kaleidoscope backend writing to this table itself), its
-- backlog is folded into view_count in the same transaction, touching only that post. A sync
-- racing the creation folds what it left behind right after it commits (kaleido.views.ledger).
CREATE OR REPLACE FUNCTION kaleido_fold_view_backlog() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    waiting bigint;
BEGIN
    DELETE FROM post_view_backlog WHERE post_id = NEW.post_id RETURNING views INTO waiting;
    IF waiting IS NOT NULL THEN
        UPDATE posts SET view_count = view_count + waiting WHERE post_id = NEW.post_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER posts_fold_view_backlog AFTER INSERT ON posts
FOR EACH ROW EXECUTE FUNCTION kaleido_fold_view_backlog();

-- What already waits for posts that exist now.
WITH folded AS (
    DELETE FROM post_view_backlog b USING posts p WHERE b.post_id = p.post_id
    RETURNING b.post_id, b.views
)
UPDATE posts p SET view_count = p.view_count + folded.views
FROM folded WHERE p.post_id = folded.post_id;
