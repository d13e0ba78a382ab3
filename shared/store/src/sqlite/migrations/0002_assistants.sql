CREATE TABLE assistants (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organisations(id),
    provider TEXT NOT NULL,
    provider_assistant_id TEXT,
    source TEXT NOT NULL,
    active INTEGER NOT NULL,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL,
    UNIQUE (org_id, provider, provider_assistant_id)
);
CREATE INDEX assistants_by_org ON assistants(org_id, id);
CREATE TABLE assistant_versions (
    assistant_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (assistant_id, version)
);
