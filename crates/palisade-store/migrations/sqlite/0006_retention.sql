-- Palisade store, SQLite schema version 6: all-time event totals per address.
--
-- Retention deletes old event rows in bounded batches (the store's `maintain`); the totals
-- (`ip_history`, `ip_jail_events`, `event_hourly`) are maintained on insert only, so they stay
-- exact when old events go; the per-address hourly timeline (`ip_event_hourly`) loses the same
-- hours. `ip_history` gains the one total it lacked, the event count.
ALTER TABLE ip_history ADD COLUMN events INTEGER NOT NULL DEFAULT 0;
UPDATE ip_history SET events = (SELECT COUNT(*) FROM events WHERE events.ip = ip_history.ip);

-- The per-address hourly timeline is kept as long as the events (retention deletes its old
-- hours); this index finds them.
CREATE INDEX ip_event_hourly_hour ON ip_event_hourly (hour);
