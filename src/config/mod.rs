//! Configuration: one TOML file, overlaid by `GRANARY_*` environment variables, then by
//! the few CLI flags, in that order. Loaded and validated once at start-up; nothing
//! reads the environment afterwards.
//!
//! Only `main` and [`crate::server`] read this module; lower layers take small option
//! structs built in `server::state`.

mod load;
mod types;

pub use load::{from_toml, load, ConfigSources, RepoFlag};
pub use types::{
    AccessConfig, AccessMode, AnonymousStatus, AuthConfig, CacheConfig, Config, Credentials,
    Format, HumanDuration, MetadataConfig, RedisConfig, RepoConfig, Secret, StorageConfig,
    UpstreamAuth, UserConfig,
};
