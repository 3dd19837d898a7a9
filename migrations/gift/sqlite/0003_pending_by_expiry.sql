-- Pending co-streaming requests by expiry: an expired request keeps state 0,
-- and the pending list must not walk every expired one to find the live.
DROP INDEX gift_co_streams_pending;
CREATE INDEX gift_co_streams_pending ON gift_co_streams (room_id, addressee_user_id, state, expires_at_ms);
