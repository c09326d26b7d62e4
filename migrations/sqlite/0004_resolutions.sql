-- Whole resolution answers (the dependency-resolution category), keyed by a hash of
-- everything that decides them but the index documents they read; `documents`
-- (JSON: project -> fingerprint, or null for one the upstream does not have) says
-- which copies they read, and an answer is used only while each is still the fresh
-- copy.
CREATE TABLE resolutions (
    resolution_key TEXT PRIMARY KEY NOT NULL,
    body BLOB NOT NULL,
    documents TEXT NOT NULL,
    stored_at BIGINT NOT NULL
);
-- Answers not written again for a while are pruned by age.
CREATE INDEX resolutions_by_age ON resolutions (stored_at);
