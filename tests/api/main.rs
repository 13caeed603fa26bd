//! Integration tests: the service over real HTTP, a real PostgreSQL database per test, and the
//! real AWS SDK clients talking to the sandbox over loopback sockets.

mod audit;
mod auth;
mod errors;
mod faults;
mod hostile;
mod long_poll;
mod openapi;
mod poller;
mod read_cache;
mod retries;
mod scenario;
mod secrets;
mod shutdown;
mod state_rules;
mod support;
mod validation;
mod vpc_checks;
mod workers;
