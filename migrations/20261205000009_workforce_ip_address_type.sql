-- The worker portal's IP address type, `ipv4` or `dualstack`, which decides whether the
-- source-IP allow-list may hold IPv6 blocks. Existing workforces are read again from AWS by
-- the next refresh; until then they count as IPv4, as SageMaker's default is.
alter table workforces add column ip_address_type text not null default 'ipv4'
    check (ip_address_type in ('ipv4', 'dualstack'));
