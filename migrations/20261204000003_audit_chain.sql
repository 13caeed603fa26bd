-- A hash chain over the audit log: each event stores the SHA-256 of its content and of the
-- previous event's hash, so an edit, a deletion or a reordering of rows is detectable.

alter table audit_events
    add column chain_seq bigint,
    add column prev_hash bytea,
    add column hash bytea;

create unique index audit_events_chain_seq on audit_events (chain_seq);

-- The digest of one event given the previous event's hash. Every column that describes the
-- event is included; NULL and empty text hash alike, which no column relies on.
create function audit_event_digest(e audit_events, previous bytea) returns bytea
language sql stable as $$
    select sha256(coalesce(previous, ''::bytea) || convert_to(concat_ws(E'\x1f',
        e.chain_seq::text, e.id::text,
        to_char(e.occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
        e.actor, e.actor_kind, coalesce(e.actor_role, ''), e.action, e.outcome,
        coalesce(e.region, ''), coalesce(e.workforce_name, ''), coalesce(e.operation_id::text, ''),
        coalesce(e.request_id, ''), coalesce(e.before_state::text, ''),
        coalesce(e.after_state::text, ''), coalesce(e.detail::text, '')), 'UTF8'))
$$;

-- Appends each new event to the chain. The advisory lock is held until the inserting
-- transaction ends, so concurrent writers append one at a time in commit order.
create function audit_events_chain() returns trigger
language plpgsql as $$
declare
    last_event record;
begin
    perform pg_advisory_xact_lock(hashtext('audit_events_chain'));
    select chain_seq, hash into last_event from audit_events order by chain_seq desc nulls last limit 1;
    new.chain_seq := coalesce(last_event.chain_seq, 0) + 1;
    new.prev_hash := last_event.hash;
    new.hash := audit_event_digest(new, last_event.hash);
    return new;
end;
$$;

-- Chain the events written before this migration, oldest first.
alter table audit_events disable trigger audit_events_no_update_or_delete;
do $$
declare
    event audit_events;
    previous bytea;
    seq bigint := 0;
begin
    for event in select * from audit_events order by id loop
        seq := seq + 1;
        event.chain_seq := seq;
        update audit_events
           set chain_seq = seq, prev_hash = previous, hash = audit_event_digest(event, previous)
         where id = event.id
        returning hash into previous;
    end loop;
end;
$$;
alter table audit_events enable trigger audit_events_no_update_or_delete;

create trigger audit_events_append_to_chain
    before insert on audit_events
    for each row execute function audit_events_chain();
