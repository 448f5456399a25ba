//! End-to-end tests: start `hookmesh standalone` as a process, configure it through gRPC and
//! `hookmesh ctl`, publish events, and assert on what real HTTP receivers on loopback got.

#[macro_use]
mod support;

mod api;
mod calls;
mod context;
mod control;
mod ctl;
mod delivery;
mod distributed;
mod durable;
mod enrich;
mod faults;
mod privacy;
mod readme;
mod security;
mod tracing;
