-- Revisions, and so ETags, come from one sequence for all workforces. A workforce deleted and
-- created again under the same name then never repeats an ETag of its earlier record, which a
-- client may still hold and send in If-Match.
--
-- The sequence starts at the current time in milliseconds. Revisions so far counted up from 1
-- per record, and those of deleted records are gone, so only a start beyond any count they can
-- have reached keeps the new values from meeting them.
create sequence workforce_revisions;
select setval('workforce_revisions',
              greatest((select max(revision) from workforces),
                       (extract(epoch from clock_timestamp()) * 1000)::bigint));
alter table workforces alter column revision set default nextval('workforce_revisions');
