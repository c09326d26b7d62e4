-- Index documents (pages, negative results), keyed by the cache key.
CREATE TABLE index_entries (
    cache_key TEXT PRIMARY KEY NOT NULL,
    -- Version of the body's serialized form, so the format can grow.
    format_version INTEGER NOT NULL,
    -- 1: a document; 0: the upstream said it does not exist (negative entry).
    found INTEGER NOT NULL,
    body BLOB NOT NULL,
    upstream_etag TEXT,
    upstream_last_modified TEXT,
    stored_at INTEGER NOT NULL,
    fresh_until INTEGER NOT NULL,
    stale_until INTEGER NOT NULL
);

-- Immutable artifacts: which blob a key resolves to.
CREATE TABLE artifacts (
    cache_key TEXT PRIMARY KEY NOT NULL,
    repo TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    stored_at INTEGER NOT NULL,
    last_access INTEGER NOT NULL
);
CREATE INDEX artifacts_by_digest ON artifacts (digest);
CREATE INDEX artifacts_by_last_access ON artifacts (last_access);
