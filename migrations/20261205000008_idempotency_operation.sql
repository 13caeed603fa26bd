-- The operation that a keyed request created, written in the transaction that creates it. A
-- repeat whose first request ended before its response was stored replays this operation
-- instead of creating a second one.
alter table idempotency_keys add column operation_id uuid;
