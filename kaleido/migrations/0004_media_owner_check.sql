-- A result names its media and a post. The post a media belongs to is the one post_media says
-- owns it; a result naming another post must not touch that post (an insight for someone
-- else's media could flag any post). Called in the WHERE of every result upsert, so it runs
-- for each row, also inside data-modifying CTEs; the error's SQLSTATE is Kaleido's own, and
-- the consumer dead-letters the entry with this message.
CREATE OR REPLACE FUNCTION kaleido_media_of_post(media bigint, post bigint) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    owner bigint;
BEGIN
    IF post IS NULL THEN
        RETURN true;
    END IF;
    SELECT pm.post_id INTO owner FROM post_media pm WHERE pm.media_id = media;
    IF FOUND AND owner IS DISTINCT FROM post THEN
        RAISE EXCEPTION 'media % belongs to post %, not to post % that the entry names',
            media, owner, post USING ERRCODE = 'KL001';
    END IF;
    RETURN true;
END
$$;
