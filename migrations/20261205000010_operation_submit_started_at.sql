-- When a worker last marked the operation `submitting`, just before it sent the mutating call.
-- A worker that resumes the operation waits until a call sent then has had time to end before
-- it sends the change again.
alter table operations add column submit_started_at timestamptz;
