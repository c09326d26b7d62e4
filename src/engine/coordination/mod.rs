//! Who does a piece of work, when many ask at once: at most one computation per key
//! ([`single_flight`]), one background refresh per index document
//! ([`refresh_lock`]), one upstream download per artifact across replicas
//! ([`download_lock`]). Every claim is released by dropping it, so an error, a
//! cancelled request or a panic never leaves a key claimed.

pub mod download_lock;
pub mod refresh_lock;
pub mod single_flight;

pub use download_lock::{DownloadLocks, HeldDownloadLock, TryLock};
pub use refresh_lock::{LocalRefreshLock, LockToken, RefreshLock};
pub use single_flight::{Role, SingleFlight};
