//! The integration test binary: drives the real `drillbook` CLI (and the library where time
//! must be paused). One binary, so it links once.

mod architecture;
mod barman;
mod canary;
mod check;
mod compare;
mod compare_as_of;
mod crash;
mod daemon;
mod engine;
mod fingerprint;
mod fuzz;
mod gc;
mod history;
mod http_server;
mod local;
mod neon;
mod neon_fake;
mod notify;
mod pgbackrest;
mod render;
mod run;
mod schedule;
mod schema;
mod sql;
mod status;
mod support;
mod tls;
mod tools;
mod validate;
