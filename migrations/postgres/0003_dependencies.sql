-- Dependencies extracted from stored artifacts, keyed by the artifact's SHA-256:
-- immutable, so written once. One status row per artifact, one row per dependency.
CREATE TABLE extractions (
    digest TEXT PRIMARY KEY NOT NULL,
    repo TEXT NOT NULL,
    format TEXT NOT NULL,
    project TEXT NOT NULL,
    version TEXT NOT NULL,
    filename TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    extractor_version BIGINT NOT NULL,
    attributes TEXT NOT NULL,
    dependency_count BIGINT NOT NULL,
    extracted_at BIGINT NOT NULL
);
CREATE INDEX extractions_by_release ON extractions (repo, project, version);
CREATE TABLE dependencies (
    digest TEXT NOT NULL,
    position BIGINT NOT NULL,
    name TEXT NOT NULL,
    requirement TEXT NOT NULL,
    kind TEXT NOT NULL,
    marker TEXT,
    optional BIGINT NOT NULL,
    details TEXT NOT NULL,
    PRIMARY KEY (digest, position)
);
