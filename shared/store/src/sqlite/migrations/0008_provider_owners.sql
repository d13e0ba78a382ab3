-- each provider resource (provider, provider id) belongs to one organisation of the deployment:
-- the first to hold it (existing directories: the earliest row)
CREATE TABLE provider_owners (
    provider TEXT NOT NULL,
    provider_id TEXT NOT NULL,
    org_id TEXT NOT NULL REFERENCES organisations(id),
    PRIMARY KEY (provider, provider_id)
);
INSERT OR IGNORE INTO provider_owners (provider, provider_id, org_id)
    SELECT provider, provider_assistant_id, org_id FROM assistants WHERE provider_assistant_id IS NOT NULL ORDER BY rowid;
