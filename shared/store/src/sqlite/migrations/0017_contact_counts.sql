-- a campaign's contacts counted by state (`s:<state>`) and disposition (`d:<disposition>`), so a
-- report reads a few rows whatever the campaign's size: new contacts (all ready) are counted by
-- add_contacts once per batch, every change of a contact's state or disposition by the trigger
CREATE TABLE contact_counts (
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    name TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, name)
) WITHOUT ROWID;

INSERT INTO contact_counts (campaign_id, name, value)
    SELECT campaign_id, 's:' || state, COUNT(*) FROM contacts GROUP BY campaign_id, state;
INSERT INTO contact_counts (campaign_id, name, value)
    SELECT campaign_id, 'd:' || disposition, COUNT(*) FROM contacts WHERE disposition IS NOT NULL GROUP BY campaign_id, disposition;

CREATE TRIGGER contact_recounted AFTER UPDATE OF state, disposition ON contacts
    WHEN OLD.state IS NOT NEW.state OR OLD.disposition IS NOT NEW.disposition BEGIN
    UPDATE contact_counts SET value = value - 1 WHERE campaign_id = OLD.campaign_id AND name = 's:' || OLD.state;
    UPDATE contact_counts SET value = value - 1 WHERE campaign_id = OLD.campaign_id AND name = 'd:' || OLD.disposition;
    INSERT INTO contact_counts (campaign_id, name, value) VALUES (NEW.campaign_id, 's:' || NEW.state, 1)
        ON CONFLICT (campaign_id, name) DO UPDATE SET value = value + 1;
    INSERT INTO contact_counts (campaign_id, name, value) SELECT NEW.campaign_id, 'd:' || NEW.disposition, 1
        WHERE NEW.disposition IS NOT NULL
        ON CONFLICT (campaign_id, name) DO UPDATE SET value = value + 1;
END;
