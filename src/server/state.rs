//! Building the service handles from the configuration: the one place where config
//! becomes the small option structs the lower layers take.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;

use crate::access::{Access, AuthSettings, Authenticator, Principal, StoredPassword};
use crate::clock::{Clock, SystemClock};
use crate::config::{
    AccessConfig, AccessMode, AuthConfig, Config, RepoConfig, Secret, UpstreamAuth as ConfigAuth,
};
use crate::engine::artifact::ReplicaStreams;
use crate::engine::redis::RedisTier;
use crate::engine::{
    ArtifactCache, ArtifactCacheOptions, CacheEngine, DownloadLocks, IndexCache, SharedIndex,
    UpstreamAuth, UpstreamClient, UpstreamOptions,
};
use crate::http_cache::FreshnessPolicy;
use crate::metadata::{
    GuardedMetadataStore, MetadataStore, PostgresMetadataStore, PostgresOptions,
    SqliteMetadataStore,
};
use crate::metrics::Metrics;
use crate::protocols::{self, Protocol, RepoSettings};
use crate::storage::{
    BlobStore, DataDirAccess, DataDirClaim, FsBlobStore, FsStoreOptions, S3BlobStore,
    S3StoreOptions,
};

/// A configured repository: its protocol, behind the one interface.
pub type Repository = Arc<dyn Protocol>;

/// Shared handles; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub struct Inner {
    pub repos: BTreeMap<String, Repository>,
    /// `public_url`, when configured.
    pub public_url: Option<String>,
    /// Bearer token for `/-/cache/`; `None` disables those endpoints.
    pub admin_token: Option<Secret>,
    pub engine: CacheEngine,
    pub metadata: Arc<dyn MetadataStore>,
    pub blobs: Arc<dyn BlobStore>,
    /// The shared tier, when configured.
    pub redis: Option<Arc<RedisTier>>,
    pub metrics: Metrics,
    /// Checks client credentials.
    pub auth: Arc<Authenticator>,
    /// Requests per repository per minute, for the status page.
    pub traffic: Arc<crate::status::Traffic>,
    /// What the status page shows callers without the admin role.
    pub anonymous_status: crate::config::AnonymousStatus,
    /// `storage.max_size`.
    pub max_stored_bytes: Option<u64>,
    /// `max_concurrent_requests`.
    pub max_concurrent_requests: usize,
    /// Documents' bodies made once: templated ones per base URL, gzip forms.
    pub bodies: super::bodies::DocumentBodies,
    /// Turns for requests in flight (`max_concurrent_requests`).
    pub request_permits: Arc<tokio::sync::Semaphore>,
    /// This process's claim on `data_dir` (its lock and temporary directory).
    pub data_dir: DataDirClaim,
    /// Badges drawn from cached metadata.
    pub badges: crate::badges::BadgeService,
    pub resolutions: crate::resolution::ResolutionCache,
    /// Published artifacts the dependency extractor has handled (`None`: it does not
    /// run in this process).
    pub extractions_handled: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl AppState {
    /// Opens the stores under `data_dir` and builds every repository's client.
    ///
    /// # Errors
    /// When a store cannot be opened or a client cannot be built; names the path.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`AppState::build`] for a process that only reads `data_dir` (`granary
    /// verify`): it takes no lock, so it runs beside a server, and touches no
    /// other process's temporary files.
    ///
    /// # Errors
    /// As [`AppState::build`].
    pub async fn build_read_only(config: &Config) -> anyhow::Result<Self> {
        Self::build_full(config, Arc::new(SystemClock), DataDirAccess::ReadOnly).await
    }

    /// [`AppState::build`] with an injected clock, for tests of time-dependent behaviour.
    ///
    /// # Errors
    /// As [`AppState::build`].
    pub async fn build_with_clock(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        Self::build_full(config, clock, DataDirAccess::Exclusive).await
    }

    async fn build_full(
        config: &Config,
        clock: Arc<dyn Clock>,
        access: DataDirAccess,
    ) -> anyhow::Result<Self> {
        let data_dir = DataDirClaim::acquire(&config.data_dir, access)
            .with_context(|| format!("cannot use data_dir `{}`", config.data_dir.display()))?;
        let metrics = Metrics::new();
        let blobs = open_blob_store(config, data_dir.temp_dir()).await?;
        let metadata = open_metadata_store(config).await?;
        let redis = match &config.redis {
            Some(redis) => Some(
                RedisTier::new(&redis.url.0, redis.timeout.into(), metrics.clone())
                    .context("invalid `redis.url`")?,
            ),
            None => None,
        };
        let shared = SharedIndex {
            metadata: Arc::clone(&metadata),
            redis: redis.clone(),
            is_shared: redis.is_some() || config.metadata.database_url.is_some(),
        };
        let download_locks = match (&config.redis, &redis) {
            (Some(settings), Some(redis)) if settings.artifact_lock => Some(DownloadLocks::new(
                Arc::clone(redis),
                settings.artifact_lock_ttl.into(),
                settings.artifact_wait.into(),
            )),
            _ => None,
        };
        let badges =
            crate::badges::BadgeService::new(redis.clone(), Arc::clone(&clock), metrics.clone());
        let engine = CacheEngine {
            index: IndexCache::new(
                config.cache.memory_capacity.as_u64(),
                shared,
                Arc::clone(&clock),
                metrics.clone(),
            ),
            artifacts: ArtifactCache::new(
                Arc::clone(&metadata),
                Arc::clone(&blobs),
                ArtifactCacheOptions {
                    max_stored_bytes: config.storage.max_size.map(|size| size.as_u64()),
                    download_locks,
                    hot_capacity_bytes: config.cache.artifact_memory_capacity.as_u64(),
                    replica_streams: replica_streams(config)?,
                },
                clock,
                metrics.clone(),
            ),
        };
        if access == DataDirAccess::Exclusive {
            engine
                .artifacts
                .spawn_maintenance(engine.artifacts.max_stored_bytes());
        }
        let traffic = Arc::new(crate::status::Traffic::default());
        if let (Some(redis), DataDirAccess::Exclusive) = (&redis, access) {
            crate::status::traffic::share_periodically(
                &traffic,
                Arc::clone(redis),
                std::time::Duration::from_secs(5),
            );
        }
        let auth = Arc::new(Authenticator::new(
            auth_settings(&config.auth, config.admin_token.as_ref())?,
            Arc::clone(&metadata),
        ));
        let mut repos = BTreeMap::new();
        for (name, repo) in &config.repos {
            repos.insert(name.clone(), build_repository(name, repo, &metrics)?);
        }
        let extractions_handled = (access == DataDirAccess::Exclusive).then(|| {
            let handled = Arc::new(std::sync::atomic::AtomicU64::new(0));
            crate::dependencies::Extractor {
                engine: engine.clone(),
                blobs: Arc::clone(&blobs),
                metadata: Arc::clone(&metadata),
                repos: repos.clone(),
                metrics: metrics.clone(),
                handled: Arc::clone(&handled),
            }
            .spawn();
            handled
        });
        let resolutions =
            crate::resolution::ResolutionCache::new(Arc::clone(&metadata), redis.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                repos,
                admin_token: config.admin_token.clone(),
                public_url: config
                    .public_url
                    .as_ref()
                    .map(|url| url.as_str().trim_end_matches('/').to_owned()),
                redis,
                engine,
                metadata,
                blobs,
                metrics,
                auth,
                traffic,
                anonymous_status: config.status.anonymous,
                max_stored_bytes: config.storage.max_size.map(|size| size.as_u64()),
                max_concurrent_requests: config.max_concurrent_requests,
                // Shares the index pages' budget: a tenth of it, at least 8 MiB.
                bodies: super::bodies::DocumentBodies::new(
                    (config.cache.memory_capacity.as_u64() / 10).max(8 << 20),
                ),
                request_permits: Arc::new(tokio::sync::Semaphore::new(
                    config.max_concurrent_requests,
                )),
                data_dir,
                badges,
                resolutions,
                extractions_handled,
            }),
        })
    }

    /// Waits (at most `limit`) until what this process fetched is stored: every fill
    /// published, every index document's shared-tier write done, every published
    /// artifact's dependencies extracted. For a process about to exit (`granary
    /// warm --in-process`); says whether it all settled.
    pub async fn settle(&self, limit: std::time::Duration) -> bool {
        let settled = async {
            while self.engine.artifacts.fills_in_flight() > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            drop(self.engine.index.writes_settled().await);
            if let Some(handled) = &self.extractions_handled {
                while handled.load(std::sync::atomic::Ordering::Acquire)
                    < self.engine.artifacts.published_count()
                {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        };
        tokio::time::timeout(limit, settled).await.is_ok()
    }
}

/// `storage.blob_store` (S3) or `data_dir/blobs`.
async fn open_blob_store(
    config: &Config,
    temp_dir: &std::path::Path,
) -> anyhow::Result<Arc<dyn BlobStore>> {
    let temp_dir = temp_dir.to_path_buf();
    let Some(url) = &config.storage.blob_store else {
        let store = FsBlobStore::open(FsStoreOptions {
            blob_dir: config.data_dir.join("blobs"),
            temp_dir,
        })
        .await
        .with_context(|| {
            format!(
                "cannot open the blob store in `{}`",
                config.data_dir.display()
            )
        })?;
        return Ok(Arc::new(store));
    };
    let storage = &config.storage;
    let store = S3BlobStore::open(S3StoreOptions {
        bucket: url.host_str().unwrap_or_default().to_owned(),
        prefix: url.path().trim_matches('/').to_owned(),
        endpoint: storage
            .s3_endpoint
            .as_ref()
            .map(|e| e.as_str().trim_end_matches('/').to_owned()),
        region: storage.s3_region.clone(),
        access_key_id: storage.s3_access_key_id.as_ref().map(|k| k.0.clone()),
        secret_access_key: storage.s3_secret_access_key.as_ref().map(|k| k.0.clone()),
        path_style: storage.s3_path_style,
        temp_dir,
    })
    .await
    .with_context(|| format!("cannot open `storage.blob_store` `{url}`"))?;
    Ok(Arc::new(store))
}

/// `metadata.database_url` (PostgreSQL) or SQLite in `data_dir`.
///
/// # Errors
/// When the database cannot be opened or migrated; names it.
pub async fn open_metadata_store(config: &Config) -> anyhow::Result<Arc<dyn MetadataStore>> {
    if let Some(url) = &config.metadata.database_url {
        let store = PostgresMetadataStore::open(&PostgresOptions {
            url: url.0.clone(),
            pool_size: config.metadata.pool_size,
            pool_overflow: config.metadata.pool_overflow,
            acquire_timeout: config.metadata.pool_timeout.into(),
        })
        .await
        .context("cannot open `metadata.database_url`")?;
        return Ok(Arc::new(GuardedMetadataStore::new(
            store,
            config.metadata.timeout.into(),
        )));
    }
    let db_path = config.data_dir.join("granary.db");
    let store = SqliteMetadataStore::open(&db_path)
        .await
        .with_context(|| format!("cannot open the metadata database `{}`", db_path.display()))?;
    Ok(Arc::new(GuardedMetadataStore::new(
        store,
        config.metadata.timeout.into(),
    )))
}

fn build_repository(
    name: &str,
    repo: &RepoConfig,
    metrics: &Metrics,
) -> anyhow::Result<Repository> {
    let upstream = UpstreamClient::new(
        UpstreamOptions {
            repo: name.to_owned(),
            root: repo.upstream.clone(),
            connect_timeout: repo.connect_timeout.into(),
            timeout: repo.timeout.into(),
            retries: repo.retries,
            max_concurrent_fills: repo.max_concurrent_fills,
            allowed_hosts: repo.allowed_hosts.clone(),
            only_allowed_hosts: repo.only_allowed_hosts,
            auth: repo.auth.clone().map(|auth| match auth {
                ConfigAuth::Basic { username, password } => {
                    UpstreamAuth::Basic { username, password }
                }
                ConfigAuth::Bearer { token } => UpstreamAuth::Bearer { token },
            }),
        },
        metrics.clone(),
    )
    .with_context(|| format!("cannot build the HTTP client for `repos.{name}`"))?;
    let policy = FreshnessPolicy {
        ttl: repo.index_ttl.into(),
        update_time: repo.update_time.into(),
        max_staleness: repo.max_staleness.map(Into::into),
    };
    let settings = RepoSettings {
        name: name.to_owned(),
        label: Box::leak(name.to_owned().into_boxed_str()),
        upstream,
        policy,
        negative_ttl: repo.negative_ttl.into(),
        access: repo_access(name, repo),
    };
    protocols::build(name, repo, settings).map_err(|message| anyhow::anyhow!(message))
}

/// Users (configured and from the htpasswd file), groups, admins, the admin token.
fn auth_settings(
    config: &AuthConfig,
    admin_token: Option<&Secret>,
) -> anyhow::Result<AuthSettings> {
    let mut users = std::collections::HashMap::new();
    if let Some(path) = &config.htpasswd {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read `auth.htpasswd` `{}`", path.display()))?;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line.split_once(':').with_context(|| {
                format!(
                    "`auth.htpasswd` `{}` line {}: expected user:hash",
                    path.display(),
                    number + 1
                )
            })?;
            let stored = StoredPassword::parse(hash).with_context(|| {
                format!(
                    "`auth.htpasswd` `{}` line {} (user `{user}`)",
                    path.display(),
                    number + 1
                )
            })?;
            users.insert(user.to_owned(), stored);
        }
    }
    for (user, settings) in &config.users {
        let stored = StoredPassword::parse(&settings.password_hash)
            .with_context(|| format!("`auth.users.{user}.password_hash`"))?;
        users.insert(user.clone(), stored);
    }
    Ok(AuthSettings {
        users,
        groups: config.groups.clone(),
        admins: config.admins.iter().map(|p| Principal::parse(p)).collect(),
        admin_token: admin_token.map(|token| token.0.clone()),
    })
}

/// A repository's access: as configured, else anonymous, or authenticated when its
/// upstream needs credentials (its content is private: say so at start-up).
fn repo_access(name: &str, repo: &RepoConfig) -> Access {
    match &repo.access {
        Some(AccessConfig::Mode(AccessMode::Authenticated)) => Access::Authenticated,
        Some(AccessConfig::Only(principals)) => {
            Access::Only(principals.iter().map(|p| Principal::parse(p)).collect())
        }
        None if repo.auth.is_some() => {
            tracing::info!(
                repo = name,
                "upstream needs credentials: repository is private (access = \"authenticated\"); set `repos.{name}.access` to change it"
            );
            Access::Authenticated
        }
        Some(AccessConfig::Mode(AccessMode::Anonymous)) | None => Access::Anonymous,
    }
}

/// Streaming downloads between replicas, with `redis.replica_secret` and the download
/// lock.
fn replica_streams(config: &Config) -> anyhow::Result<Option<ReplicaStreams>> {
    match &config.redis {
        Some(redis) if redis.artifact_lock => match &redis.replica_secret {
            Some(secret) => Ok(Some(
                ReplicaStreams::new(&secret.0)
                    .context("cannot build the client between replicas")?,
            )),
            None => Ok(None),
        },
        _ => Ok(None),
    }
}
