-- contact files uploaded for import (domain::upload::ContactUpload as JSON), by campaign
CREATE TABLE contact_uploads (
    org_id TEXT NOT NULL REFERENCES organisations(id),
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    id TEXT NOT NULL,
    status TEXT NOT NULL,
    upload TEXT NOT NULL,
    PRIMARY KEY (campaign_id, id)
) WITHOUT ROWID;
