-- dial-path safety: the emergency stop, legal calling areas (zone + US state), consent, and
-- calls no longer unique per attempt number (a withdrawn call gives its attempt back)
ALTER TABLE organisations ADD COLUMN emergency_stop TEXT;
ALTER TABLE campaigns ADD COLUMN start_refused TEXT;
ALTER TABLE contacts ADD COLUMN us_state TEXT NOT NULL DEFAULT '';
ALTER TABLE contacts ADD COLUMN consent TEXT;
DROP INDEX contacts_ready;
CREATE INDEX contacts_ready ON contacts(campaign_id, batch, timezone, us_state, due_at, priority DESC, id) WHERE state = 'ready';
CREATE TABLE campaign_areas (
    campaign_id TEXT NOT NULL,
    timezone TEXT NOT NULL,
    us_state TEXT NOT NULL,
    PRIMARY KEY (campaign_id, timezone, us_state)
) WITHOUT ROWID;
DROP TABLE campaign_zones;
CREATE TABLE calls_v7 (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    contact_id TEXT NOT NULL REFERENCES contacts(id),
    attempt INTEGER NOT NULL,
    phone TEXT NOT NULL,
    state TEXT NOT NULL,
    end_reason TEXT,
    ended_at INTEGER,
    details TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_status_at INTEGER NOT NULL,
    provider_call_id TEXT,
    caller_id TEXT,
    placed_at INTEGER,
    dialing_since INTEGER,
    provider TEXT,
    post_call_at INTEGER,
    disposition TEXT
);
INSERT INTO calls_v7 (id, org_id, campaign_id, contact_id, attempt, phone, state, end_reason, ended_at, details, created_at,
    last_status_at, provider_call_id, caller_id, placed_at, dialing_since, provider, post_call_at, disposition)
SELECT id, org_id, campaign_id, contact_id, attempt, phone, state, end_reason, ended_at, details, created_at,
    last_status_at, provider_call_id, caller_id, placed_at, dialing_since, provider, post_call_at, disposition FROM calls;
DROP TABLE calls;
ALTER TABLE calls_v7 RENAME TO calls;
CREATE INDEX calls_by_campaign ON calls(campaign_id, id);
CREATE UNIQUE INDEX calls_by_provider_id ON calls(provider, provider_call_id) WHERE provider_call_id IS NOT NULL;
CREATE INDEX calls_active ON calls(campaign_id, last_status_at) WHERE state IN ('queued', 'ringing', 'in_progress');
CREATE INDEX calls_awaiting_post_call ON calls(campaign_id) WHERE post_call_at IS NULL AND state IN ('ended', 'failed', 'canceled', 'timeout');
