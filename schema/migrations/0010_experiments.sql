-- A/B experiments between model versions (SPEC, "Online evaluation"). At most one runs
-- (ended_at IS NULL); every API process loads it at start and re-reads it every few
-- seconds, so it survives restarts and reaches all of them. `variants` holds what each
-- process needs to serve the same models: [{"path", "sha256", "model_version", "share"}],
-- the path resolved inside the models dir (or MODEL_PATH) and the digest it had when the
-- experiment was started (a file replaced since is not served in its place).
CREATE TABLE experiments (
    id         text PRIMARY KEY,
    variants   jsonb       NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    ended_at   timestamptz
);
CREATE UNIQUE INDEX experiments_one_running ON experiments ((true)) WHERE ended_at IS NULL;
