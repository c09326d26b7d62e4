//! A granary on an ephemeral loopback port, built from a real configuration file.

use std::net::SocketAddr;
use std::sync::Arc;

use granary::clock::{Clock, SystemClock};
use granary::config::{self, Config, ConfigSources};
use granary::server::{router, AppState};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// A running granary.
pub struct TestGranary {
    pub addr: SocketAddr,
    /// Keeps the temporary directory alive as long as the server.
    _scratch: TempDir,
    pub state: AppState,
    pub config: Config,
    stop: Option<oneshot::Sender<()>>,
}

impl TestGranary {
    /// A granary with one PyPI repository `pypi` proxying `upstream`, plus `extra` TOML
    /// lines in the repository's table.
    pub async fn pypi(upstream: &str, extra: &str) -> Self {
        Self::start(upstream, extra, Arc::new(SystemClock)).await
    }

    pub async fn start(upstream: &str, extra: &str, clock: Arc<dyn Clock>) -> Self {
        Self::start_full(upstream, "", extra, clock).await
    }

    /// With extra top-level settings too.
    pub async fn start_with_top_level(upstream: &str, top_level: &str, extra: &str) -> Self {
        Self::start_full(upstream, top_level, extra, Arc::new(SystemClock)).await
    }

    async fn start_full(
        upstream: &str,
        top_level: &str,
        extra: &str,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::start_format("pypi", upstream, top_level, extra, clock).await
    }

    /// A granary with one npm repository `npm` proxying `upstream`.
    pub async fn npm(upstream: &str, extra: &str) -> Self {
        Self::start_format("npm", upstream, "", extra, Arc::new(SystemClock)).await
    }

    /// A granary with one repository of `format`, named like its format.
    pub async fn with_format(format: &str, upstream: &str, extra: &str) -> Self {
        Self::start_format(format, upstream, "", extra, Arc::new(SystemClock)).await
    }

    /// [`TestGranary::with_format`] with top-level settings too (`[auth]`, ...).
    pub async fn with_format_and_top_level(
        format: &str,
        upstream: &str,
        top_level: &str,
        extra: &str,
    ) -> Self {
        Self::start_format(format, upstream, top_level, extra, Arc::new(SystemClock)).await
    }

    /// Stores an API token for `user` and returns it.
    pub async fn token_for(&self, user: &str) -> String {
        let token = granary::access::new_token();
        self.state
            .metadata
            .put_api_token(&granary::metadata::ApiTokenRecord {
                hash: granary::access::token_hash(&token),
                user: user.to_owned(),
                created_at: std::time::SystemTime::now(),
                expires_at: None,
            })
            .await
            .expect("store token");
        token
    }

    async fn start_format(
        format: &str,
        upstream: &str,
        top_level: &str,
        extra: &str,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let repos = format!(
            "[repos.{format}]\nformat = \"{format}\"\nupstream = \"{upstream}\"\n{extra}\n"
        );
        Self::start_config(top_level, &repos, clock).await
    }

    /// A granary with the repositories of `repos` (TOML `[repos.NAME]` tables).
    pub async fn with_repos(repos: &str) -> Self {
        Self::start_config("", repos, Arc::new(SystemClock)).await
    }

    /// [`TestGranary::with_repos`] with an injected clock.
    pub async fn with_repos_and_clock(repos: &str, clock: Arc<dyn Clock>) -> Self {
        Self::start_config("", repos, clock).await
    }

    /// [`TestGranary::with_repos`] with top-level settings too (`[auth]`, ...).
    pub async fn with_top_level_and_repos(top_level: &str, repos: &str) -> Self {
        Self::start_config(top_level, repos, Arc::new(SystemClock)).await
    }

    /// [`TestGranary::with_top_level_and_repos`] with an injected clock.
    pub async fn with_top_level_and_repos_and_clock(
        top_level: &str,
        repos: &str,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::start_config(top_level, repos, clock).await
    }

    async fn start_config(top_level: &str, repos: &str, clock: Arc<dyn Clock>) -> Self {
        let data_dir = tempfile::tempdir().expect("data dir");
        let config_path = data_dir.path().join("granary.toml");
        std::fs::write(
            &config_path,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{top_level}\n\n{repos}",
                data_dir.path().join("data").display()
            ),
        )
        .expect("write config");
        let config = config::load(&ConfigSources {
            file: Some(config_path),
            ..ConfigSources::default()
        })
        .expect("test config loads");
        let state = AppState::build_with_clock(&config, clock)
            .await
            .expect("state builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind granary");
        let addr = listener.local_addr().expect("addr");
        let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            addr,
            _scratch: data_dir,
            state,
            config,
            stop: Some(stop),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// `data_dir` as configured.
    pub fn data(&self) -> std::path::PathBuf {
        self.config.data_dir.clone()
    }

    /// Waits until every fill has been published (publishing follows the clients'
    /// last byte, so files appear in the store a moment after a response ends).
    pub async fn settle(&self) {
        for _ in 0..500 {
            if self.state.engine.artifacts.fills_in_flight() == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("fills did not finish");
    }

    /// GETs `path` with a client that does not follow redirects.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        Self::client()
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// A client that never follows redirects (tests look at them).
    pub fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }
}

impl Drop for TestGranary {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
