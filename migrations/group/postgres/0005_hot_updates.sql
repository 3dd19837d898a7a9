-- Rows updated on every send, pull or ack keep room in their page, so an
-- update is HOT (heap-only: no new index entry, pruned in place). Measured
-- on a head upsert of 1,600 users: ~13 us per row at the default 100, ~4-5
-- us at 50. Applies to pages written from now on (a VACUUM FULL rewrites
-- older ones, if ever worth a lock).
ALTER TABLE mailbox_heads SET (fillfactor = 50);
ALTER TABLE device_cursors SET (fillfactor = 50);
ALTER TABLE groups SET (fillfactor = 50);
ALTER TABLE group_members SET (fillfactor = 80);
