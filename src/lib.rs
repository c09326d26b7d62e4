//! granary: a caching proxy for package registries.
//!
//! Reading order (the direction of dependencies, top to bottom):
//! - [`access`]: who is asking (credentials, users, tokens) and what they may read.
//! - [`config`]: the TOML file, the `GRANARY_` environment overlay and validation.
//! - [`warm`]: `granary warm`, filling a running granary from lockfiles over HTTP.
//! - [`server`]: axum router, state, the mapping of errors to responses, ops endpoints.
//! - [`badges`] and [`status`]: pages of granary's own, drawn from what it caches;
//!   [`dependencies`]: what every stored artifact declares, extracted once;
//!   [`resolution`]: whole resolutions, cached while the documents they read hold.
//! - [`protocols`]: everything that knows an ecosystem (URLs, keys, index rewriting).
//! - [`engine`]: the protocol-agnostic cache engine (index documents, artifacts,
//!   coordination, maintenance, the upstream client).
//! - [`http_cache`]: pure freshness decisions; no I/O, `now` is a parameter.
//! - [`storage`] (blobs) and [`metadata`] (small rows): the durable truth.
//!
//! Start at [`server::run`] and follow a request from [`server::router`].

pub mod access;
pub mod badges;
pub mod clock;
pub mod config;
pub mod dependencies;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod http_cache;
pub mod metadata;
pub mod metrics;
pub mod protocols;
pub mod resolution;
pub mod server;
pub mod status;
pub mod storage;
pub mod warm;
