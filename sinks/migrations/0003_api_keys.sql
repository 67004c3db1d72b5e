-- API keys of the gateway, one project each. Only a SHA-256 of the key is stored (keys are
-- 256-bit random strings, so a fast hash is enough); `prefix` is the key's first characters
-- so that a person can tell keys apart without the key itself.

CREATE TABLE api_keys (
    id          text        PRIMARY KEY,
    project     text        NOT NULL,
    key_hash    text        NOT NULL UNIQUE,
    prefix      text        NOT NULL,
    name        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_project ON api_keys (project);
