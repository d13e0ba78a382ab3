-- the caller-ID registry: each number belongs to at most one organisation of the deployment
CREATE TABLE caller_ids (
    phone TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organisations(id),
    vapi_phone_number_id TEXT,
    elevenlabs_phone_number_id TEXT,
    registered_at INTEGER NOT NULL
);
CREATE INDEX caller_ids_by_org ON caller_ids (org_id, phone);
