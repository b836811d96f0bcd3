-- The tables peers rely on (docs/CONTRACT.md section 3) and the bookkeeping of the exactly-once
-- protocols. Results for a media or post that has no row are still recorded, so the result
-- tables carry no foreign key to posts or post_media.

CREATE TABLE posts (
    post_id     bigint PRIMARY KEY CHECK (post_id > 0),
    user_id     bigint NOT NULL,
    status      text NOT NULL DEFAULT 'PUBLISHED',
    view_count  bigint NOT NULL DEFAULT 0 CHECK (view_count >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE post_media (
    media_id    bigint PRIMARY KEY CHECK (media_id > 0),
    post_id     bigint NOT NULL REFERENCES posts (post_id) ON DELETE CASCADE,
    media_url   text NOT NULL,
    position    integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX post_media_post_id ON post_media (post_id, position);

CREATE TABLE media_ai_insights (
    media_id               bigint PRIMARY KEY,
    post_id                bigint,
    status                 text NOT NULL DEFAULT 'PROCESSING',
    is_safe                boolean,
    moderation_confidence  double precision,
    caption                text,
    tags                   text[],
    scenes                 text[],
    image_embedding        real[],
    services_completed     text[] NOT NULL DEFAULT '{}',
    correlation_id         text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX media_ai_insights_post_id ON media_ai_insights (post_id);

CREATE TABLE media_detected_faces (
    id                     bigserial PRIMARY KEY,
    media_id               bigint NOT NULL,
    face_uid               text NOT NULL,
    post_id                bigint,
    bbox                   integer[],
    confidence_score       double precision,
    embedding              real[],
    status                 text NOT NULL DEFAULT 'UNIDENTIFIED',
    suggested_user_id      bigint,
    suggestion_confidence  double precision,
    matched_username       text,
    correlation_id         text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (media_id, face_uid)
);
CREATE INDEX media_detected_faces_post_id ON media_detected_faces (post_id);

-- Stream entries whose effects are committed: a redelivered entry finds its row and is skipped.
CREATE TABLE processed_messages (
    stream        text NOT NULL,
    entry_id      text NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, entry_id)
);
CREATE INDEX processed_messages_processed_at ON processed_messages (processed_at);

-- View sync batches already applied: a batch id found here is never applied again.
CREATE TABLE view_sync_batches (
    batch_id    uuid PRIMARY KEY,
    posts       integer NOT NULL,
    views       bigint NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX view_sync_batches_applied_at ON view_sync_batches (applied_at);

-- Synced views of posts that have no row yet; folded into posts.view_count once the row exists.
CREATE TABLE post_view_backlog (
    post_id     bigint PRIMARY KEY,
    views       bigint NOT NULL CHECK (views >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
