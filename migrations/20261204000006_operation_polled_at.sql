-- Time of the last DescribeWorkforce that still showed an operation's change in progress. The
-- duration recorded in operation_durations ends halfway between it and the poll that saw the
-- terminal status, so that the history does not include the detection delay.
alter table operations add column polled_at timestamptz;
