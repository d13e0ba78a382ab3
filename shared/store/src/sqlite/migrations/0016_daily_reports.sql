-- the report counters of each hour's finished calls (domain::report), by organisation and
-- campaign, moved with the campaign's: a daily report sums the hours of its day
CREATE TABLE report_hour_counts (
    org_id TEXT NOT NULL,
    hour TEXT NOT NULL,
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    name TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (org_id, hour, campaign_id, name)
) WITHOUT ROWID;

-- daily organisation reports as made (JSON), and who receives them
CREATE TABLE daily_reports (
    org_id TEXT NOT NULL REFERENCES organisations(id),
    date TEXT NOT NULL,
    report TEXT NOT NULL,
    PRIMARY KEY (org_id, date)
) WITHOUT ROWID;

CREATE TABLE daily_report_recipients (
    org_id TEXT PRIMARY KEY REFERENCES organisations(id),
    recipients TEXT NOT NULL
) WITHOUT ROWID;
