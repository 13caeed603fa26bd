-- Responses to requests that carried an Idempotency-Key, replayed when the caller repeats one.

create table idempotency_keys (
    -- The credential that sent the request (kind and name), so keys of callers never collide.
    caller          text        not null,
    key             text        not null,
    -- SHA-256 of the method, path and body; a repeat with another request is rejected.
    request_hash    bytea       not null,
    -- Null while the first request is still being handled.
    status_code     integer,
    response_body   bytea,
    location        text,
    -- A request whose handler died is taken over by a repeat after this time.
    locked_until    timestamptz not null,
    created_at      timestamptz not null default now(),
    expires_at      timestamptz not null,
    primary key (caller, key)
);

create index idempotency_keys_expiry on idempotency_keys (expires_at);
