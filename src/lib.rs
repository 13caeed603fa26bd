//! workforce-service: a REST API that manages Amazon SageMaker Ground Truth private workforces
//! and their VPC configurations, with durable background operations and an audit log.

pub mod app;
pub mod auth;
pub mod aws;
pub mod budget;
pub mod cache;
pub mod changes;
pub mod config;
pub mod db;
pub mod domain;
pub mod http;
pub mod poller;
pub mod refresh;
pub mod secrets;
pub mod telemetry;
pub mod vpc_checks;
pub mod watch;
pub mod worker;
