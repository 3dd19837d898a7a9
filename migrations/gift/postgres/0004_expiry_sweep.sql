-- Requests still waiting, by expiry, for the sweep that writes their
-- expiry record (state 4) once their time is up.
CREATE INDEX gift_co_streams_due ON gift_co_streams (expires_at_ms) WHERE state = 0;
