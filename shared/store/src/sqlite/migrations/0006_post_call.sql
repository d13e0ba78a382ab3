ALTER TABLE calls ADD COLUMN post_call_at INTEGER;
ALTER TABLE calls ADD COLUMN disposition TEXT;
CREATE INDEX calls_awaiting_post_call ON calls(campaign_id) WHERE post_call_at IS NULL AND state IN ('ended', 'failed', 'canceled', 'timeout');
CREATE TABLE orphan_events (
    provider TEXT NOT NULL,
    provider_call_id TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (provider, provider_call_id, dedupe_key)
) WITHOUT ROWID;
CREATE INDEX orphan_events_by_age ON orphan_events(received_at);
