-- Every sync rewrites the view_count of many posts. With room left on each page, PostgreSQL
-- updates those rows in place (HOT: no new index entries, less to vacuum), since no index
-- covers view_count or updated_at. Applies to pages written from now on; a table rewrite
-- (VACUUM FULL, pg_repack) extends it to existing rows.
ALTER TABLE posts SET (fillfactor = 70);
