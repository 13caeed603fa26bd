-- Names each changed workforce, operation and API key on the read_cache_invalidated channel when
-- the changing transaction commits, so that every process drops its cached copy (src/cache.rs).
-- PostgreSQL folds identical notifications of one transaction into one.

create function read_cache_announce() returns trigger
language plpgsql as $$
declare
    changed record;
begin
    if tg_op = 'DELETE' then
        changed := old;
    else
        changed := new;
    end if;
    if tg_table_name = 'workforces' then
        perform pg_notify('read_cache_invalidated', 'workforce/' || changed.region || '/' || changed.name);
    elsif tg_table_name = 'operations' then
        perform pg_notify('read_cache_invalidated', 'operation/' || changed.id::text);
        -- A workforce's response shows its unfinished operation.
        perform pg_notify('read_cache_invalidated',
                          'workforce/' || changed.region || '/' || changed.workforce_name);
    elsif tg_table_name = 'api_keys' then
        perform pg_notify('read_cache_invalidated', 'api_key/' || changed.id::text);
    end if;
    return null;
end;
$$;

create trigger workforces_read_cache_announce
    after insert or update or delete on workforces
    for each row execute function read_cache_announce();

create trigger operations_read_cache_announce
    after insert or update or delete on operations
    for each row execute function read_cache_announce();

create trigger api_keys_read_cache_announce
    after update or delete on api_keys
    for each row execute function read_cache_announce();
