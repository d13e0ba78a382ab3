-- where an organisation's finished calls are delivered; the secret is sealed before it gets here
CREATE TABLE crm_connections (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organisations(id),
    name TEXT NOT NULL,
    target TEXT NOT NULL,
    sealed_secret TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX crm_connections_by_org ON crm_connections (org_id, id);
