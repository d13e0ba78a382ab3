ALTER TABLE campaigns ADD COLUMN assistant_id TEXT;
CREATE INDEX campaigns_by_assistant ON campaigns(org_id, assistant_id) WHERE assistant_id IS NOT NULL;
