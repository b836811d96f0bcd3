-- The rest of the real ML pipeline (docs/CONTRACT.md section 2b): a transactional outbox for
-- everything Kaleido announces, profile face enrolment, post-level aggregation, and the read
-- models the ML service's search sync indexes.

-- Bumped whenever a post's set of media ids changes: a post-level aggregation is triggered once
-- per media set (post_aggregations is keyed by it).
ALTER TABLE posts ADD COLUMN media_version integer NOT NULL DEFAULT 1;

-- What Kaleido announces on its outbound streams, written in the transaction of the change it
-- announces and published after commit by the relay (kaleido.outbox), which deletes a row once
-- Redis has its entry. `fields` is the entry (name, value, name, value, ...); a row of kind
-- 'aggregation' has none: its trigger is rendered when published, from the post's state then.
-- A row with a `coalesce_key` (a search document) is one pending announcement per key: a later
-- change updates the row instead of adding one (the search sync reads the row it names anyway).
CREATE TABLE outbox (
    id            bigserial PRIMARY KEY,
    stream        text NOT NULL,
    kind          text NOT NULL DEFAULT 'entry' CHECK (kind IN ('entry', 'aggregation')),
    fields        text[],
    subject       bigint,
    coalesce_key  text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'entry') = (fields IS NOT NULL))
);
CREATE UNIQUE INDEX outbox_coalesce_key ON outbox (coalesce_key) WHERE coalesce_key IS NOT NULL;

-- The latest profile-picture request of each user: only the answer carrying its correlation id
-- is applied (an older picture's answer, arriving late, is stale).
CREATE TABLE profile_picture_requests (
    user_id         bigint PRIMARY KEY CHECK (user_id > 0),
    correlation_id  text NOT NULL,
    image_url       text NOT NULL,
    username        text,
    department      text,
    requested_at    timestamptz NOT NULL DEFAULT now()
);

-- A user's profile face as the ML service last answered the latest request; `active` is false
-- for an all-zero embedding (no usable face), which is recorded but not enrolled.
CREATE TABLE user_face_embeddings (
    user_id         bigint PRIMARY KEY,
    embedding       real[] NOT NULL,
    active          boolean NOT NULL,
    correlation_id  text,
    entry           numeric,  -- the stream position of the answer shown (below)
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- The read models the ML service's search sync reads (CONTRACT 2b: exact names, keys, columns).
CREATE TABLE read_model_known_faces (
    face_id          text PRIMARY KEY,
    user_id          bigint NOT NULL UNIQUE,
    username         text,
    department       text,
    profile_pic_url  text,
    face_embedding   real[],
    enrolled_at      timestamptz NOT NULL DEFAULT now(),
    is_active        boolean NOT NULL DEFAULT true
);

CREATE TABLE read_model_face_search (
    face_id              text PRIMARY KEY,
    media_id             bigint NOT NULL,
    post_id              bigint,
    face_embedding       real[],
    bbox                 integer[],
    identified_user_id   bigint,
    identified_username  text,
    match_confidence     double precision,
    uploader_id          bigint,
    post_title           text,
    media_url            text,
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX read_model_face_search_media_id ON read_model_face_search (media_id);

CREATE TABLE read_model_recommendations_knn (
    media_id         bigint PRIMARY KEY,
    image_embedding  real[],
    media_url        text,
    caption          text,
    is_safe          boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE read_model_feed_personalized (
    media_id           bigint PRIMARY KEY,
    post_id            bigint,
    uploader_id        bigint,
    media_url          text,
    caption            text,
    reaction_count     integer NOT NULL DEFAULT 0,
    comment_count      integer NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now(),
    feed_item_id       text,
    target_user_id     bigint,
    uploader_username  text,
    combined_score     double precision NOT NULL DEFAULT 0,
    expires_at         timestamptz
);

-- One aggregation trigger per (post, media set), claimed here so that several processes and
-- redeliveries publish it once; its correlation id names the answer that may be applied.
CREATE TABLE post_aggregations (
    post_id         bigint NOT NULL,
    media_version   integer NOT NULL,
    correlation_id  text NOT NULL UNIQUE,
    claimed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, media_version)
);

-- The ML aggregator's answer to a post's latest trigger (every field of post-insights-enriched).
CREATE TABLE post_insights (
    post_id                bigint PRIMARY KEY,
    media_count            integer NOT NULL,
    all_ai_tags            text[] NOT NULL,
    all_ai_scenes          text[] NOT NULL,
    aggregated_tags        text[] NOT NULL,
    aggregated_scenes      text[] NOT NULL,
    total_faces            integer NOT NULL,
    is_safe                boolean NOT NULL,
    moderation_confidence  double precision NOT NULL,
    inferred_event_type    text NOT NULL,
    combined_caption       text NOT NULL,
    has_multiple_images    boolean NOT NULL,
    correlation_id         text NOT NULL,
    aggregated_at          timestamptz,
    entry                  numeric,  -- the stream position of the answer shown (below)
    updated_at             timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------- stream order

-- Results may be applied out of stream order: a read whose reply was lost leaves its entries
-- to a later re-read, entries of a dead consumer are reclaimed after newer ones were applied,
-- several processes share a group. Each value remembers the stream position of the entry that
-- set it (`kaleido.streams.handlers.base.position`: milliseconds * 2^64 + sequence), and an
-- older entry never overwrites a newer one, so any order ends where stream order ends.
ALTER TABLE media_ai_insights
    ADD COLUMN moderation_entry numeric,
    ADD COLUMN tagging_entry numeric,
    ADD COLUMN scenes_entry numeric,
    ADD COLUMN caption_entry numeric,
    ADD COLUMN embedding_entry numeric,
    ADD COLUMN correlation_entry numeric,
    ADD COLUMN post_entry numeric;
ALTER TABLE media_detected_faces
    ADD COLUMN detected_entry numeric,
    ADD COLUMN recognized_entry numeric;

-- Whether an entry at `incoming` is newer than the value set at `stored` (none: any is).
CREATE OR REPLACE FUNCTION kaleido_newer(stored numeric, incoming numeric) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT incoming IS NOT NULL AND (stored IS NULL OR incoming > stored)
$$;

-- Whether a moderation verdict replaces the stored one. Unsafe is sticky and the earliest
-- unsafe verdict is the one shown; a safe verdict replaces an older safe one only.
CREATE OR REPLACE FUNCTION kaleido_takes_verdict(
    stored_safe boolean, stored numeric, incoming_safe boolean, incoming numeric
) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT incoming IS NOT NULL AND CASE
        WHEN incoming_safe IS FALSE THEN stored_safe IS NOT FALSE OR incoming < stored
        ELSE stored_safe IS NOT FALSE AND (stored IS NULL OR incoming > stored) END
$$;

-- ---------------------------------------------------------------------------- search sync

-- One es-sync-queue announcement of a document (coalesced per document while unpublished). The
-- correlation id is the change's when it has one (only ids the ML service keeps as text are
-- ever stored), else a new UUID.
CREATE OR REPLACE FUNCTION kaleido_announce_document(
    index_type text, document_id text, operation text, correlation text
) RETURNS void LANGUAGE sql AS $$
    INSERT INTO outbox (stream, fields, coalesce_key)
    VALUES ('es-sync-queue',
            ARRAY['indexType', index_type, 'operation', operation, 'documentId', document_id,
                  'timestamp',
                  to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                  'correlationId', coalesce(nullif(correlation, ''), gen_random_uuid()::text)],
            'es:' || index_type || ':' || document_id)
    ON CONFLICT (coalesce_key) WHERE coalesce_key IS NOT NULL
    DO UPDATE SET fields = EXCLUDED.fields
$$;

-- A media item's read models (recommendations_knn once it has an embedding, feed_personalized
-- as soon as it belongs to a post), from post_media, posts and media_ai_insights. A media that
-- belongs to no post yet has none: its results wait, and storing the post projects them.
CREATE OR REPLACE FUNCTION kaleido_project_media(media bigint, correlation text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    SELECT m.post_id, m.media_url, m.created_at, p.user_id, i.caption, i.is_safe,
           i.image_embedding
    INTO r
    FROM post_media m JOIN posts p ON p.post_id = m.post_id
    LEFT JOIN media_ai_insights i ON i.media_id = m.media_id
    WHERE m.media_id = media;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO read_model_feed_personalized AS f (
        media_id, post_id, uploader_id, media_url, caption, created_at, feed_item_id)
    VALUES (media, r.post_id, r.user_id, r.media_url, r.caption, r.created_at,
            'media-' || media)
    ON CONFLICT (media_id) DO UPDATE SET
        post_id = EXCLUDED.post_id, uploader_id = EXCLUDED.uploader_id,
        media_url = EXCLUDED.media_url, caption = EXCLUDED.caption;
    PERFORM kaleido_announce_document('feed_personalized', media::text, 'index', correlation);
    IF r.image_embedding IS NOT NULL THEN
        INSERT INTO read_model_recommendations_knn AS k (
            media_id, image_embedding, media_url, caption, is_safe, created_at)
        VALUES (media, r.image_embedding, r.media_url, r.caption, coalesce(r.is_safe, true),
                r.created_at)
        ON CONFLICT (media_id) DO UPDATE SET
            image_embedding = EXCLUDED.image_embedding, media_url = EXCLUDED.media_url,
            caption = EXCLUDED.caption, is_safe = EXCLUDED.is_safe;
        PERFORM kaleido_announce_document('recommendations_knn', media::text, 'index',
                                          correlation);
    END IF;
END
$$;

-- One detected face's face_search document, once its media belongs to a post. A face id is
-- the ML service's UUID; should several media claim the same id, the lowest media id keeps the
-- document (whatever order the detections arrive in).
CREATE OR REPLACE FUNCTION kaleido_project_face(face bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    SELECT f.face_uid, f.media_id, m.post_id, f.embedding, f.bbox, f.suggested_user_id,
           f.matched_username, f.suggestion_confidence, p.user_id, m.media_url, f.created_at,
           f.correlation_id
    INTO r
    FROM media_detected_faces f
    JOIN post_media m ON m.media_id = f.media_id
    JOIN posts p ON p.post_id = m.post_id
    WHERE f.id = face;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO read_model_face_search AS s (
        face_id, media_id, post_id, face_embedding, bbox, identified_user_id,
        identified_username, match_confidence, uploader_id, media_url, created_at)
    VALUES (r.face_uid, r.media_id, r.post_id, r.embedding, r.bbox, r.suggested_user_id,
            r.matched_username, r.suggestion_confidence, r.user_id, r.media_url, r.created_at)
    ON CONFLICT (face_id) DO UPDATE SET
        post_id = EXCLUDED.post_id, face_embedding = EXCLUDED.face_embedding,
        bbox = EXCLUDED.bbox, identified_user_id = EXCLUDED.identified_user_id,
        identified_username = EXCLUDED.identified_username,
        match_confidence = EXCLUDED.match_confidence, uploader_id = EXCLUDED.uploader_id,
        media_url = EXCLUDED.media_url, media_id = EXCLUDED.media_id,
        created_at = EXCLUDED.created_at
    WHERE EXCLUDED.media_id <= s.media_id;
    IF FOUND THEN
        PERFORM kaleido_announce_document('face_search', r.face_uid, 'index', r.correlation_id);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION kaleido_on_insights() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM kaleido_project_media(NEW.media_id, NEW.correlation_id);
    RETURN NULL;
END
$$;

-- Only what the read models show: another service's result changes none of them.
CREATE TRIGGER media_ai_insights_project_insert AFTER INSERT ON media_ai_insights
FOR EACH ROW EXECUTE FUNCTION kaleido_on_insights();
CREATE TRIGGER media_ai_insights_project_update AFTER UPDATE ON media_ai_insights
FOR EACH ROW WHEN (OLD.caption IS DISTINCT FROM NEW.caption
                   OR OLD.is_safe IS DISTINCT FROM NEW.is_safe
                   OR OLD.image_embedding IS DISTINCT FROM NEW.image_embedding)
EXECUTE FUNCTION kaleido_on_insights();

CREATE OR REPLACE FUNCTION kaleido_on_face() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM kaleido_project_face(NEW.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER media_detected_faces_project AFTER INSERT OR UPDATE ON media_detected_faces
FOR EACH ROW EXECUTE FUNCTION kaleido_on_face();

-- A media stored (or its URL changed) projects it and its faces; a media removed (replaced, or
-- its post deleted) takes its documents with it, each announced as deleted.
CREATE OR REPLACE FUNCTION kaleido_on_post_media() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    gone text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        FOR gone IN DELETE FROM read_model_recommendations_knn WHERE media_id = OLD.media_id
                    RETURNING media_id::text LOOP
            PERFORM kaleido_announce_document('recommendations_knn', gone, 'delete', NULL);
        END LOOP;
        FOR gone IN DELETE FROM read_model_feed_personalized WHERE media_id = OLD.media_id
                    RETURNING media_id::text LOOP
            PERFORM kaleido_announce_document('feed_personalized', gone, 'delete', NULL);
        END LOOP;
        FOR gone IN DELETE FROM read_model_face_search WHERE media_id = OLD.media_id
                    RETURNING face_id LOOP
            PERFORM kaleido_announce_document('face_search', gone, 'delete', NULL);
            -- Another media's face with that id takes the document over.
            PERFORM kaleido_project_face(f.id) FROM media_detected_faces f
            WHERE f.face_uid = gone AND f.media_id <> OLD.media_id;
        END LOOP;
        RETURN NULL;
    END IF;
    PERFORM kaleido_project_media(NEW.media_id, NULL);
    PERFORM kaleido_project_face(f.id) FROM media_detected_faces f
    WHERE f.media_id = NEW.media_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER post_media_project AFTER INSERT OR UPDATE OF post_id, media_url OR DELETE
ON post_media FOR EACH ROW EXECUTE FUNCTION kaleido_on_post_media();

-- ---------------------------------------------------------------------------- aggregation

-- Claim the post's aggregation trigger when every current media of it has the four results the
-- ML aggregator needs (the backend's gate), once per media set. Runs when the transaction
-- commits (deferred triggers, below) under one advisory lock, so that of two transactions
-- completing a post's last two media at once, the second sees the first's commit; a crash or a
-- rollback before the commit claims nothing. The trigger is rendered when the relay publishes it.
CREATE OR REPLACE FUNCTION kaleido_claim_aggregation(post bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    version integer;
    media_count bigint;
    incomplete bigint;
BEGIN
    IF post IS NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(1262569292);  -- 'KAGL': Kaleido's aggregation claims
    SELECT p.media_version INTO version FROM posts p WHERE p.post_id = post;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT count(*),
           count(*) FILTER (WHERE i.services_completed IS NULL OR NOT i.services_completed
                            @> ARRAY['moderation', 'tagging', 'scene_recognition',
                                     'image_captioning'])
    INTO media_count, incomplete
    FROM post_media m LEFT JOIN media_ai_insights i ON i.media_id = m.media_id
    WHERE m.post_id = post;
    IF media_count = 0 OR incomplete > 0 THEN
        RETURN;
    END IF;
    INSERT INTO post_aggregations (post_id, media_version, correlation_id)
    VALUES (post, version, gen_random_uuid()::text)
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        INSERT INTO outbox (stream, kind, subject, coalesce_key)
        VALUES ('post-aggregation-trigger', 'aggregation', post, 'aggregation:' || post)
        ON CONFLICT (coalesce_key) WHERE coalesce_key IS NOT NULL DO NOTHING;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION kaleido_on_complete_media() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM kaleido_claim_aggregation(
        (SELECT m.post_id FROM post_media m WHERE m.media_id = NEW.media_id));
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER media_ai_insights_claim_aggregation
AFTER INSERT OR UPDATE ON media_ai_insights DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW WHEN (NEW.services_completed
                   @> ARRAY['moderation', 'tagging', 'scene_recognition', 'image_captioning'])
EXECUTE FUNCTION kaleido_on_complete_media();

CREATE OR REPLACE FUNCTION kaleido_on_media_set() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM kaleido_claim_aggregation(OLD.post_id);
    ELSE
        PERFORM kaleido_claim_aggregation(NEW.post_id);
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER post_media_claim_aggregation
AFTER INSERT OR DELETE ON post_media DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION kaleido_on_media_set();
