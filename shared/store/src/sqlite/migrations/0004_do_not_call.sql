CREATE TABLE do_not_call (
    org_id TEXT NOT NULL REFERENCES organisations(id),
    phone TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, phone)
) WITHOUT ROWID;
CREATE INDEX ready_contacts_by_phone ON contacts(phone) WHERE state = 'ready';
CREATE INDEX campaigns_by_status ON campaigns(org_id, status);
