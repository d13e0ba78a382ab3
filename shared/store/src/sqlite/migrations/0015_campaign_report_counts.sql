-- a campaign's report counters (domain::report), moved as its calls end and as late details
-- reach finished calls: a report reads these rows, never the calls
CREATE TABLE campaign_report_counts (
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    name TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, name)
) WITHOUT ROWID;
