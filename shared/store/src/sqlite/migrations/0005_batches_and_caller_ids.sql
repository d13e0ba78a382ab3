ALTER TABLE contacts ADD COLUMN batch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE contacts ADD COLUMN caller_id TEXT;
DROP INDEX contacts_ready;
CREATE INDEX contacts_ready ON contacts(campaign_id, batch, timezone, due_at, priority DESC, id) WHERE state = 'ready';
ALTER TABLE campaigns ADD COLUMN current_batch INTEGER NOT NULL DEFAULT 0;
CREATE TABLE campaign_zones (
    campaign_id TEXT NOT NULL,
    timezone TEXT NOT NULL,
    PRIMARY KEY (campaign_id, timezone)
) WITHOUT ROWID;
INSERT OR IGNORE INTO campaign_zones SELECT DISTINCT campaign_id, timezone FROM contacts;
ALTER TABLE calls ADD COLUMN provider_call_id TEXT;
ALTER TABLE calls ADD COLUMN caller_id TEXT;
ALTER TABLE calls ADD COLUMN placed_at INTEGER;
ALTER TABLE calls ADD COLUMN dialing_since INTEGER;
ALTER TABLE calls ADD COLUMN provider TEXT;
CREATE UNIQUE INDEX calls_by_provider_id ON calls(provider, provider_call_id) WHERE provider_call_id IS NOT NULL;
CREATE INDEX calls_active ON calls(campaign_id, last_status_at) WHERE state IN ('queued', 'ringing', 'in_progress');
CREATE TABLE tick_executions (
    campaign_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, execution_id)
) WITHOUT ROWID;
CREATE TABLE dial_pace (
    account TEXT PRIMARY KEY,
    next_free INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE caller_id_usage (
    org_id TEXT NOT NULL,
    phone TEXT NOT NULL,
    last_used INTEGER NOT NULL,
    PRIMARY KEY (org_id, phone)
) WITHOUT ROWID;
