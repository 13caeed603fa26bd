-- Workforces as last seen in AWS, operations (durable long-running changes)
-- and the append-only audit log.

create table workforces (
    region            text        not null,
    name              text        not null,
    arn               text,
    aws_status        text,
    failure_reason    text,
    subdomain         text,
    auth_kind         text        not null check (auth_kind in ('cognito', 'oidc')),
    -- Cognito or OIDC settings without the OIDC client secret.
    auth_config       jsonb       not null,
    vpc_config        jsonb,
    source_ip_cidrs   text[]      not null default '{}',
    tags              jsonb       not null default '[]',
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    aws_refreshed_at  timestamptz,
    -- Incremented on every change of the row; the ETag is derived from it.
    revision          bigint      not null default 1,
    primary key (region, name)
);

-- AWS allows one private workforce per account and region.
create unique index workforces_one_per_region on workforces (region);

create table operations (
    id                uuid        primary key,
    kind              text        not null,
    region            text        not null,
    workforce_name    text        not null,
    status            text        not null check (status in ('pending', 'running', 'succeeded', 'failed')),
    -- The desired change as the worker submits it, without secrets.
    request           jsonb       not null,
    -- The OIDC client secret, AES-256-GCM encrypted, erased once SageMaker accepted the change.
    sealed_secret     bytea,
    -- 'submit' before the mutating call, 'submitting' once it may have been sent, 'poll' after
    -- SageMaker accepted it.
    phase             text        not null default 'submit' check (phase in ('submit', 'submitting', 'poll')),
    aws_status        text,
    failure_code      text,
    failure_message   text,
    findings          jsonb       not null default '[]',
    attempts          integer     not null default 0,
    run_at            timestamptz not null default now(),
    locked_by         text,
    locked_until      timestamptz,
    deadline_at       timestamptz not null,
    submitted_at      timestamptz,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    finished_at       timestamptz,
    request_id        text,
    actor             text        not null
);

-- At most one unfinished operation per workforce.
create unique index operations_one_unfinished_per_workforce
    on operations (region, workforce_name)
    where status in ('pending', 'running');

create index operations_due on operations (run_at) where status in ('pending', 'running');
create index operations_created on operations (created_at desc, id desc);
create index operations_workforce on operations (region, workforce_name, created_at desc);

create table audit_events (
    id                bigint      generated always as identity primary key,
    occurred_at       timestamptz not null default clock_timestamp(),
    actor             text        not null,
    action            text        not null,
    outcome           text        not null,
    region            text,
    workforce_name    text,
    operation_id      uuid,
    request_id        text,
    before_state      jsonb,
    after_state       jsonb,
    detail            jsonb
);

create index audit_events_workforce on audit_events (region, workforce_name, id desc);
create index audit_events_operation on audit_events (operation_id, id desc);
create index audit_events_action on audit_events (action, id desc);
create index audit_events_time on audit_events (occurred_at, id);

create function audit_events_reject_change() returns trigger
language plpgsql as $$
begin
    raise exception 'audit_events is append-only: % is not allowed', tg_op
        using errcode = 'insufficient_privilege';
end;
$$;

create trigger audit_events_no_update_or_delete
    before update or delete on audit_events
    for each row execute function audit_events_reject_change();

create trigger audit_events_no_truncate
    before truncate on audit_events
    for each statement execute function audit_events_reject_change();
