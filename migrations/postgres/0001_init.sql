-- Index documents (pages, negative results), keyed by the cache key.
CREATE TABLE index_entries (
    cache_key TEXT PRIMARY KEY NOT NULL,
    format_version INTEGER NOT NULL,
    found INTEGER NOT NULL,
    body BYTEA NOT NULL,
    upstream_etag TEXT,
    upstream_last_modified TEXT,
    stored_at BIGINT NOT NULL,
    fresh_until BIGINT NOT NULL,
    stale_until BIGINT NOT NULL
);

-- Immutable artifacts: which blob a key resolves to.
CREATE TABLE artifacts (
    cache_key TEXT PRIMARY KEY NOT NULL,
    repo TEXT NOT NULL,
    digest TEXT NOT NULL,
    size BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    stored_at BIGINT NOT NULL,
    last_access BIGINT NOT NULL
);
CREATE INDEX artifacts_by_digest ON artifacts (digest);
CREATE INDEX artifacts_by_last_access ON artifacts (last_access);
