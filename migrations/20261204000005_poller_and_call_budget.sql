-- Observed durations of operations, which the adaptive poller schedules DescribeWorkforce
-- calls from, a shared budget of SageMaker calls, and a notification on every change of an
-- operation for long-polling readers.

-- Time from SageMaker accepting a change to the terminal status that ended it (Active, Failed
-- or gone), one row per finished operation.
create table operation_durations (
    id           bigint      generated always as identity primary key,
    region       text        not null,
    kind         text        not null,
    duration_ms  bigint      not null check (duration_ms >= 0),
    finished_at  timestamptz not null default now()
);

create index operation_durations_recent on operation_durations (region, kind, id desc);

-- SageMaker calls taken in the current second, per AWS account and region. Every process on
-- this database takes its calls from the same row.
create table aws_call_budgets (
    account      text    not null,
    region       text    not null,
    -- Unix time in whole seconds of the window that `calls` counts.
    window_start bigint  not null,
    calls        integer not null check (calls >= 0),
    primary key (account, region)
);

-- Announces the id of an operation whose status, AWS status or update time changed, when the
-- changing transaction commits.
create function operations_announce_change() returns trigger
language plpgsql as $$
begin
    if new.status is distinct from old.status
       or new.aws_status is distinct from old.aws_status
       or new.updated_at is distinct from old.updated_at then
        perform pg_notify('operations_changed', new.id::text);
    end if;
    return null;
end;
$$;

create trigger operations_announce_change
    after update on operations
    for each row execute function operations_announce_change();
