-- who took a number off the do-not-call list, and when: kept for audit
CREATE TABLE do_not_call_removals (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id TEXT NOT NULL REFERENCES organisations(id),
    phone TEXT NOT NULL,
    removed_at INTEGER NOT NULL,
    removed_by TEXT NOT NULL
);
CREATE INDEX do_not_call_removals_by_org ON do_not_call_removals (org_id, seq);
