-- Acknowledged source positions (file offsets, journald cursor), written in the same
-- transaction as the events they cover, so a restart resumes right after the last line whose
-- events and decisions are stored.
CREATE TABLE source_positions (
    source   TEXT PRIMARY KEY,
    position TEXT NOT NULL,
    updated  INTEGER NOT NULL
);
