//! The configuration's shape. Every struct denies unknown fields so that a typo is a
//! start-up error naming the key, never a silently ignored setting.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};
use url::Url;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Directory for blobs, temporary files and the embedded database.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Log filter in `tracing` env-filter syntax, e.g. `info,granary=debug`.
    #[serde(default = "default_log")]
    pub log: String,
    /// How long in-flight responses may take to finish after SIGINT/SIGTERM.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: HumanDuration,
    /// How long a client may take to send a request's head (line and headers); a
    /// slower one is disconnected, so trickled headers cannot hold connections open.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: HumanDuration,
    /// The URL clients reach granary at, e.g. `https://granary.example.internal`, for
    /// documents that need absolute URLs (npm tarballs). Absent: taken from each
    /// request's `Host`.
    #[serde(default)]
    pub public_url: Option<Url>,
    /// Requests handled at once; more wait for a turn (a bound on memory and file
    /// descriptors under a flood).
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// Bearer token for the `/-/cache/` admin endpoints; absent: they are disabled.
    #[serde(default)]
    pub admin_token: Option<Secret>,
    /// The blob store.
    #[serde(default)]
    pub storage: StorageConfig,
    /// The metadata database.
    #[serde(default)]
    pub metadata: MetadataConfig,
    /// The shared cache tier and cross-replica locks. Absent: in-process only.
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// The in-process cache tier.
    #[serde(default)]
    pub cache: CacheConfig,
    /// The status page.
    #[serde(default)]
    pub status: StatusConfig,
    /// Users, groups and the admin role, for private repositories.
    #[serde(default)]
    pub auth: AuthConfig,
    /// One table per repository, mounted at `/NAME/`.
    #[serde(default)]
    pub repos: BTreeMap<String, RepoConfig>,
}

/// Settings of the in-process cache tier.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Upper bound on the bytes held by the in-process cache of index documents.
    /// 64 MiB holds the rendered pages of a few thousand typical projects.
    #[serde(default = "default_memory_capacity")]
    pub memory_capacity: ByteSize,
    /// Upper bound on the bytes of small (up to 1 MiB), hot artifacts kept whole in
    /// memory, so their hits touch neither database nor disk.
    #[serde(default = "default_artifact_memory_capacity")]
    pub artifact_memory_capacity: ByteSize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            memory_capacity: default_memory_capacity(),
            artifact_memory_capacity: default_artifact_memory_capacity(),
        }
    }
}

/// Settings of the blob store.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Upper bound on stored artifact bytes; least recently used artifacts are evicted
    /// beyond it. Absent: no bound.
    #[serde(default)]
    pub max_size: Option<ByteSize>,
    /// `s3://bucket/prefix` for S3-compatible object storage. Absent: `data_dir/blobs`.
    #[serde(default)]
    pub blob_store: Option<Url>,
    /// The S3 endpoint, e.g. `http://127.0.0.1:3900` (absent: AWS's own).
    #[serde(default)]
    pub s3_endpoint: Option<Url>,
    #[serde(default = "default_s3_region")]
    pub s3_region: String,
    #[serde(default)]
    pub s3_access_key_id: Option<Secret>,
    #[serde(default)]
    pub s3_secret_access_key: Option<Secret>,
    /// Path-style requests (`endpoint/bucket/key`), which most self-hosted S3 servers need.
    #[serde(default = "default_true")]
    pub s3_path_style: bool,
}

/// Settings of the metadata database.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataConfig {
    /// `postgres://user@host/db` for PostgreSQL. Absent: SQLite in `data_dir`.
    #[serde(default)]
    pub database_url: Option<Secret>,
    /// Connections kept in the pool.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// Extra connections opened under load, closed when idle.
    #[serde(default = "default_pool_overflow")]
    pub pool_overflow: u32,
    /// How long a query waits for a connection before failing.
    #[serde(default = "default_pool_timeout")]
    pub pool_timeout: HumanDuration,
    /// Bound on any one metadata operation. Past it the operation fails, and for a
    /// second after a failure operations fail at once (a circuit breaker), so a
    /// stalled database never stalls requests that memory can answer.
    #[serde(default = "default_metadata_timeout")]
    pub timeout: HumanDuration,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        Self {
            database_url: None,
            pool_size: default_pool_size(),
            pool_overflow: default_pool_overflow(),
            pool_timeout: default_pool_timeout(),
            timeout: default_metadata_timeout(),
        }
    }
}

/// Settings of the Redis tier.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db`.
    pub url: Secret,
    /// Bound on any one Redis operation; past it the replica falls back to its own
    /// tiers, so a slow Redis never slows requests much.
    #[serde(default = "default_redis_timeout")]
    pub timeout: HumanDuration,
    /// Take a cross-replica lock before fetching an artifact, so a stampede spread
    /// over replicas causes one upstream fetch in total.
    #[serde(default = "default_true")]
    pub artifact_lock: bool,
    /// Lifetime of that lock; the holder renews it while downloading, so a replica
    /// that dies mid-download releases it after at most this long.
    #[serde(default = "default_fill_lock_ttl")]
    pub artifact_lock_ttl: HumanDuration,
    /// How long a replica waits for another replica's download before failing.
    #[serde(default = "default_fill_wait")]
    pub artifact_wait: HumanDuration,
    /// A secret every replica shares. With it, a replica whose clients ask for an
    /// artifact another replica is downloading streams the bytes from that replica
    /// as they arrive (and checks them as its own download would), instead of
    /// waiting for the whole file to be stored.
    #[serde(default)]
    pub replica_secret: Option<Secret>,
    /// The address other replicas reach this one at, e.g. `http://10.1.2.3:8080`.
    /// Default: the address `listen` bound, when it is not a wildcard.
    #[serde(default)]
    pub replica_url: Option<String>,
}

/// Settings of `/-/status`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    /// What callers without the admin role see: `"summary"` (everything but project
    /// names, the default) or `"off"` (nothing: 401).
    #[serde(default)]
    pub anonymous: AnonymousStatus,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AnonymousStatus {
    #[default]
    Summary,
    Off,
}

/// Client authentication: who may read private repositories.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Users with an argon2id hash (`granary hash-password`) or a bcrypt one.
    #[serde(default)]
    pub users: BTreeMap<String, UserConfig>,
    /// An htpasswd file of bcrypt entries (`htpasswd -B`); its users are added.
    #[serde(default)]
    pub htpasswd: Option<PathBuf>,
    /// Group name → member user names.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// Users (`name`) and groups (`group:name`) with the admin role.
    #[serde(default)]
    pub admins: Vec<String>,
}

/// One configured user.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub password_hash: String,
}

impl fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{ password_hash: <redacted> }")
    }
}

/// Who may read a repository: `"anonymous"`, `"authenticated"`, or a list of users
/// and `group:NAME`s.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum AccessConfig {
    Mode(AccessMode),
    Only(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessMode {
    Anonymous,
    Authenticated,
}

/// A secret string: redacted in `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// The package ecosystem a repository speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Pypi,
    Npm,
    Cargo,
    Maven,
    /// A plain HTTP upstream (a web application), with route rules.
    Http,
}

impl Format {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pypi => "pypi",
            Self::Npm => "npm",
            Self::Cargo => "cargo",
            Self::Maven => "maven",
            Self::Http => "http",
        }
    }

    /// The format named `name` (as [`Format::as_str`] and `Protocol::format` say it).
    #[must_use]
    pub fn named(name: &str) -> Option<Self> {
        [Self::Pypi, Self::Npm, Self::Cargo, Self::Maven, Self::Http]
            .into_iter()
            .find(|format| format.as_str() == name)
    }
}

/// One proxied repository.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    pub format: Format,
    /// The upstream's index root (for PyPI, the Simple API root ending in `/simple/`).
    pub upstream: Url,
    /// How long index pages are served without asking the upstream. Five minutes
    /// matches what public indexes advertise and keeps new releases visible quickly.
    #[serde(default = "default_index_ttl")]
    pub index_ttl: HumanDuration,
    /// Time one index refresh may take; the refresh lock lives this long and stale
    /// copies are served for twice this after the TTL (the dogpile rule).
    #[serde(default = "default_update_time")]
    pub update_time: HumanDuration,
    /// How long an upstream 404 is remembered; short, so a just-published package
    /// appears quickly.
    #[serde(default = "default_negative_ttl")]
    pub negative_ttl: HumanDuration,
    /// Offline mode: how long past its grace period an index page may still be
    /// served while the upstream fails. Absent: no limit.
    #[serde(default)]
    pub max_staleness: Option<HumanDuration>,
    /// Time to establish a TCP/TLS connection to the upstream.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// Upper bound on one index fetch, and on any single read of an artifact body.
    #[serde(default = "default_upstream_timeout")]
    pub timeout: HumanDuration,
    /// Extra attempts for idempotent requests that failed to connect or got 502/503/504.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Credentials sent to the upstream's own origin (never to other hosts).
    #[serde(default)]
    pub auth: Option<UpstreamAuth>,
    /// Artifact downloads from this upstream at once; more wait their turn
    /// (`granary_fills_queued`). Downloads outlive the clients that started them.
    #[serde(default = "default_max_concurrent_fills")]
    pub max_concurrent_fills: usize,
    /// Who may read this repository. Absent: anonymous, unless `auth` is set (an
    /// upstream that needs credentials is private by default: authenticated).
    #[serde(default)]
    pub access: Option<AccessConfig>,
    /// Hosts besides the upstream's own that granary may fetch from although they
    /// are not public addresses (file links on an internal mirror, say).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Fetch only from the upstream's host and `allowed_hosts`.
    #[serde(default)]
    pub only_allowed_hosts: bool,
    /// `http` format: cookies whose presence means "personal": never served from the
    /// cache, never stored.
    #[serde(default)]
    pub bypass_cookies: Vec<String>,
    /// `http` format: route rules, first match wins; no match: passed through.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// One route rule of an `http` repository.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// A regex matched against the path below the mount point (with its leading `/`).
    pub path: String,
    /// How long a stored response is served without asking the upstream.
    pub ttl: HumanDuration,
    /// How long past `ttl` a stale copy is served while one refresh runs.
    #[serde(default = "default_rule_swr")]
    pub stale_while_revalidate: HumanDuration,
    /// Request headers whose values make separate entries (e.g. `Accept`).
    #[serde(default)]
    pub vary: Vec<String>,
    /// Larger responses are passed through, not stored.
    #[serde(default = "default_rule_max_body")]
    pub max_body: ByteSize,
    /// Also store `404`s, this long.
    #[serde(default)]
    pub not_found_ttl: Option<HumanDuration>,
    /// The upstream's `s-maxage`/`max-age` bound `ttl`; `max-age=0` is not stored.
    #[serde(default)]
    pub respect_upstream: bool,
}

/// Credentials for an upstream. Never logged, never returned.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, untagged)]
pub enum UpstreamAuth {
    Basic { username: String, password: String },
    Bearer { token: String },
}

/// The same credentials in the form the upstream client takes.
pub type Credentials = UpstreamAuth;

impl fmt::Debug for UpstreamAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Self::Bearer { .. } => f
                .debug_struct("Bearer")
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

/// A duration written the human way in the file (`"5m"`, `"30s"`, `"1h 30m"`).
#[derive(Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct HumanDuration(#[serde(with = "humantime_serde")] pub Duration);

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl From<HumanDuration> for Duration {
    fn from(value: HumanDuration) -> Self {
        value.0
    }
}

fn default_true() -> bool {
    true
}
fn default_s3_region() -> String {
    "us-east-1".to_owned()
}
fn default_pool_size() -> u32 {
    20
}
fn default_pool_overflow() -> u32 {
    30
}
fn default_pool_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_rule_swr() -> HumanDuration {
    HumanDuration(Duration::from_secs(0))
}
fn default_rule_max_body() -> ByteSize {
    ByteSize::mib(2)
}
fn default_metadata_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_max_concurrent_requests() -> usize {
    4096
}
fn default_max_concurrent_fills() -> usize {
    32
}
fn default_redis_timeout() -> HumanDuration {
    HumanDuration(Duration::from_millis(500))
}
fn default_fill_lock_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_fill_wait() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./granary-data")
}
fn default_log() -> String {
    "info".to_owned()
}
fn default_shutdown_grace() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_header_read_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_memory_capacity() -> ByteSize {
    ByteSize::mib(64)
}
fn default_artifact_memory_capacity() -> ByteSize {
    ByteSize::mib(64)
}
fn default_index_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}
fn default_update_time() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_negative_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_upstream_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_retries() -> u32 {
    2
}
