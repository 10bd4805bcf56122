-- Artifacts `cinemate train` wrote, by SHA-256: the service unpickles a `.pkl` only when
-- its digest is here or pinned by the operator (MODEL_SHA256). A digest file beside an
-- artifact proves integrity, not who wrote it.
CREATE TABLE model_artifacts (
    sha256     text PRIMARY KEY,
    file       text        NOT NULL,
    format     text        NOT NULL,
    version    text        NOT NULL,
    trained_at timestamptz NOT NULL DEFAULT now()
);
