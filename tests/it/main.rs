#![allow(unreachable_pub)]
//! granary's integration tests: one binary, one module per concern.

mod access;
mod artifacts;
mod bad_input;
mod badges;
mod bounded_store;
mod cache_engine;
mod cargo;
mod conformance;
mod crash;
mod dependencies;
mod e2e_clients;
mod faults;
mod hardening;
mod maven;
mod maven_resolve;
mod memory;
mod npm;
mod ops;
mod pypi_index;
mod resolve;
mod scale_out;
mod status;
mod support;
mod upstream_client;
mod warm;
mod web_cache;
