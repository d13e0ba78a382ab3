-- a live call's transcript, kept in chunks of new lines: a save writes only what is new
CREATE TABLE transcript_chunks (
    call_id TEXT NOT NULL REFERENCES calls(id),
    first_line INTEGER NOT NULL,
    lines TEXT NOT NULL,
    PRIMARY KEY (call_id, first_line)
);
