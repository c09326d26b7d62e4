//! Building the service handles from the configuration: the one place where config
//! becomes the small option structs the lower layers take.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Format, RepoConfig, Secret, UpstreamAuth as ConfigAuth};
use crate::http_cache::FreshnessPolicy;
use crate::metadata::{MetadataStore, PostgresMetadataStore, PostgresOptions, SqliteMetadataStore};
use crate::metrics::Metrics;
use crate::protocols::cargo::CargoRepo;
use crate::protocols::maven::MavenRepo;
use crate::protocols::npm::NpmRepo;
use crate::protocols::pypi::PypiRepo;
use crate::protocols::RepoSettings;
use crate::proxy::redis_tier::RedisTier;
use crate::proxy::{
    ArtifactCache, ArtifactCacheOptions, CacheEngine, CrossReplicaLock, IndexCache, SharedIndex,
    UpstreamAuth, UpstreamClient, UpstreamOptions,
};
use crate::storage::{BlobStore, FsBlobStore, FsStoreOptions, S3BlobStore, S3StoreOptions};

/// A configured repository.
#[derive(Debug, Clone)]
pub enum Repository {
    Pypi(PypiRepo),
    Npm(NpmRepo),
    Cargo(CargoRepo),
    Maven(MavenRepo),
}

impl Repository {
    /// What every repository has: name, label, upstream, freshness rules.
    #[must_use]
    pub fn settings(&self) -> &RepoSettings {
        match self {
            Self::Pypi(repo) => &repo.settings,
            Self::Npm(repo) => &repo.settings,
            Self::Cargo(repo) => &repo.settings,
            Self::Maven(repo) => &repo.settings,
        }
    }

    #[must_use]
    pub fn upstream(&self) -> &UpstreamClient {
        &self.settings().upstream
    }

    /// The repository's name as a metrics label.
    #[must_use]
    pub fn label(&self) -> &'static str {
        self.settings().label
    }

    /// The key format label of this repository.
    #[must_use]
    pub fn format(&self) -> &'static str {
        match self {
            Self::Pypi(_) => crate::protocols::pypi::keys::FORMAT,
            Self::Npm(_) => crate::protocols::npm::keys::FORMAT,
            Self::Cargo(_) => crate::protocols::cargo::index::FORMAT,
            Self::Maven(_) => crate::protocols::maven::layout::FORMAT,
        }
    }

    /// The index key of one project, in this repository's spelling rules: a PyPI
    /// project, an npm package, a crate, or a Maven `group:artifact`.
    ///
    /// # Errors
    /// When the name is invalid for the format.
    pub fn project_index_key(
        &self,
        project: &str,
    ) -> Result<crate::proxy::CacheKey, crate::protocols::RequestError> {
        match self {
            Self::Pypi(repo) => repo.project_index_key(project),
            Self::Npm(_) if crate::protocols::npm::keys::is_valid_package_name(project) => Ok(
                crate::protocols::npm::keys::packument_key(self.name(), project),
            ),
            Self::Npm(_) => Err(crate::protocols::RequestError::BadRequest(format!(
                "`{project}` is not a valid npm package name"
            ))),
            Self::Cargo(repo) => repo.project_index_key(project),
            Self::Maven(repo) => repo.project_index_key(project),
        }
    }

    /// The repository's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.settings().name
    }
}

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
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl AppState {
    /// The base URL clients reach granary at: `public_url`, else the request's `Host`
    /// (only when it is a plain host[:port], so nothing odd is echoed into URLs).
    #[must_use]
    pub fn base_url(&self, headers: &http::HeaderMap) -> String {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        let host = headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.len() <= 255
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            })
            .unwrap_or("localhost");
        format!("http://{host}")
    }

    /// Opens the stores under `data_dir` and builds every repository's client.
    ///
    /// # Errors
    /// When a store cannot be opened or a client cannot be built; names the path.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`AppState::build`] with an injected clock, for tests of time-dependent behaviour.
    ///
    /// # Errors
    /// As [`AppState::build`].
    pub async fn build_with_clock(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let data_dir = &config.data_dir;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create data_dir `{}`", data_dir.display()))?;
        let metrics = Metrics::new();
        let blobs = open_blob_store(config).await?;
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
        let cross_replica = match (&config.redis, &redis) {
            (Some(settings), Some(redis)) if settings.artifact_lock => Some(CrossReplicaLock {
                redis: Arc::clone(redis),
                ttl: settings.artifact_lock_ttl.into(),
                wait: settings.artifact_wait.into(),
            }),
            _ => None,
        };
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
                    cross_replica,
                    hot_capacity_bytes: config.cache.artifact_memory_capacity.as_u64(),
                },
                clock,
                metrics.clone(),
            ),
        };
        engine
            .artifacts
            .spawn_maintenance(engine.artifacts.max_stored_bytes());
        let mut repos = BTreeMap::new();
        for (name, repo) in &config.repos {
            repos.insert(name.clone(), build_repository(name, repo, &metrics)?);
        }
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
            }),
        })
    }
}

/// `storage.blob_store` (S3) or `data_dir/blobs`.
async fn open_blob_store(config: &Config) -> anyhow::Result<Arc<dyn BlobStore>> {
    let temp_dir = config.data_dir.join("tmp");
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
async fn open_metadata_store(config: &Config) -> anyhow::Result<Arc<dyn MetadataStore>> {
    if let Some(url) = &config.metadata.database_url {
        let store = PostgresMetadataStore::open(&PostgresOptions {
            url: url.0.clone(),
            pool_size: config.metadata.pool_size,
            pool_overflow: config.metadata.pool_overflow,
            acquire_timeout: config.metadata.pool_timeout.into(),
        })
        .await
        .context("cannot open `metadata.database_url`")?;
        return Ok(Arc::new(store));
    }
    let db_path = config.data_dir.join("granary.db");
    let store = SqliteMetadataStore::open(&db_path)
        .await
        .with_context(|| format!("cannot open the metadata database `{}`", db_path.display()))?;
    Ok(Arc::new(store))
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
    };
    Ok(match repo.format {
        Format::Pypi => Repository::Pypi(PypiRepo { settings }),
        Format::Npm => Repository::Npm(NpmRepo { settings }),
        Format::Cargo => Repository::Cargo(CargoRepo::new(settings)),
        Format::Maven => Repository::Maven(MavenRepo::new(settings)),
    })
}
