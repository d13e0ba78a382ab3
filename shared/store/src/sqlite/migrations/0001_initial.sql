CREATE TABLE organisations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE api_keys (
    hash TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organisations(id),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE campaigns (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organisations(id),
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    cap INTEGER NOT NULL,
    settings TEXT NOT NULL,
    active_calls INTEGER NOT NULL DEFAULT 0 CHECK (active_calls >= 0 AND active_calls <= cap),
    contacts_total INTEGER NOT NULL DEFAULT 0,
    contacts_done INTEGER NOT NULL DEFAULT 0,
    calls_total INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    completed_at INTEGER
);
CREATE INDEX campaigns_by_org ON campaigns(org_id, id);
CREATE TABLE contacts (
    id TEXT PRIMARY KEY,
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    phone TEXT NOT NULL,
    name TEXT,
    timezone TEXT NOT NULL,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    due_at INTEGER NOT NULL,
    disposition TEXT,
    last_call_id TEXT,
    variables TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (campaign_id, phone)
);
CREATE INDEX contacts_by_campaign ON contacts(campaign_id, id);
CREATE INDEX contacts_ready ON contacts(campaign_id, due_at, priority DESC, id) WHERE state = 'ready';
CREATE TABLE calls (
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
    UNIQUE (contact_id, attempt)
);
CREATE INDEX calls_by_campaign ON calls(campaign_id, id);
CREATE TABLE call_events (
    call_id TEXT NOT NULL REFERENCES calls(id),
    dedupe_key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    occurred_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (call_id, dedupe_key)
);
