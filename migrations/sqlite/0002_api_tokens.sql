-- API tokens (`granary token create`): only their SHA-256 is kept.
CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);
