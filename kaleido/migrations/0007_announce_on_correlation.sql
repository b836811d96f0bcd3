-- A media item's search-sync announcement carries the correlation id of the last result applied
-- to it, whether the results came one per read or merged in one batch: a result that changes
-- only the correlation id (a tagging after a first result without one) announces again, which
-- the outbox coalesces while unpublished. Before, a batch announced the last entry's id and the
-- same entries one by one the first's.
DROP TRIGGER media_ai_insights_project_update ON media_ai_insights;
CREATE TRIGGER media_ai_insights_project_update AFTER UPDATE ON media_ai_insights
FOR EACH ROW WHEN (OLD.caption IS DISTINCT FROM NEW.caption
                   OR OLD.is_safe IS DISTINCT FROM NEW.is_safe
                   OR OLD.image_embedding IS DISTINCT FROM NEW.image_embedding
                   OR OLD.correlation_id IS DISTINCT FROM NEW.correlation_id)
EXECUTE FUNCTION kaleido_on_insights();
