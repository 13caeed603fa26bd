-- API keys for services and scripts, and the credential behind each audit event.

create table api_keys (
    id            uuid        primary key,
    name          text        not null unique,
    role          text        not null check (role in ('viewer', 'operator', 'auditor', 'admin')),
    -- Regions an operator may change; null means every configured region.
    regions       text[],
    -- SHA-256 of the key. The key itself is shown once, at creation, and never stored.
    key_hash      bytea       not null unique,
    created_at    timestamptz not null default now(),
    expires_at    timestamptz,
    revoked_at    timestamptz
);

alter table audit_events
    add column actor_kind text not null default 'anonymous',
    add column actor_role text;

create index audit_events_actor on audit_events (actor, id desc);
