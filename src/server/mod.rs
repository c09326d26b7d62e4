//! The HTTP server: wiring ([`state`]), routing ([`router`]), the request log and
//! metrics layer ([`middleware`]), turning replies and errors into responses
//! ([`respond`], [`error`]), granary's own endpoints ([`ops`]) and shutdown.

mod accept;
mod admin;
mod api;
mod authorize;
mod badge;
mod bodies;
pub mod error;
mod middleware;
mod ops;
mod own_paths;
mod replica;
mod request_id;
mod resolve_file;
pub(crate) mod respond;
pub(crate) mod router;
pub mod state;
mod warm;

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::Config;
pub use router::router;
pub use state::AppState;

/// Threads the runtime may start for blocking work (file reads, large renders): a
/// bound on the memory their stacks and allocator caches hold.
pub const MAX_BLOCKING_THREADS: usize = 64;

/// Binds `config.listen` and serves until `shutdown` completes, then drains
/// in-flight responses for at most `config.shutdown_grace`.
///
/// # Errors
/// When the stores cannot be opened or the address cannot be bound.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on `{}` (setting `listen`)", config.listen))?;
    serve(listener, config, shutdown).await
}

/// Like [`run`], on a listener the caller bound (tests bind port 0).
///
/// # Errors
/// When the stores cannot be opened.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grace: Duration = config.shutdown_grace.into();
    let state = AppState::build(&config).await?;
    let address = listener
        .local_addr()
        .context("listener has no local address")?;
    info!(%address, repos = ?config.repos.keys().collect::<Vec<_>>(), "granary listening");
    advertise_to_replicas(&state, &config, address);

    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let server = accept::serve_connections(
        listener,
        router(state),
        config.header_read_timeout.into(),
        async move {
            shutdown.await;
            info!("shutdown requested; draining in-flight requests");
            let _ = drain_tx.send(());
        },
    );
    let mut server = tokio::spawn(server);
    tokio::select! {
        result = &mut server => {
            result.context("server task panicked")?;
        }
        () = async {
            let _ = drain_rx.await;
            tokio::time::sleep(grace).await;
        } => {
            warn!(?grace, "grace period over; closing remaining connections");
            server.abort();
        }
    }
    info!("granary stopped");
    Ok(())
}

/// With streaming between replicas configured, puts this replica's address in the
/// download locks it takes: `redis.replica_url`, else the bound address unless it is
/// a wildcard (then the others cannot know it, and wait for the stored file instead).
fn advertise_to_replicas(state: &AppState, config: &Config, address: std::net::SocketAddr) {
    let Some(redis) = &config.redis else {
        return;
    };
    if redis.replica_secret.is_none() {
        return;
    }
    match &redis.replica_url {
        Some(url) => state.engine.artifacts.advertise(url),
        None if !address.ip().is_unspecified() => {
            state
                .engine
                .artifacts
                .advertise(&format!("http://{address}"));
        }
        None => warn!(
            %address,
            "`redis.replica_secret` is set but `listen` is a wildcard address: set `redis.replica_url` so other replicas can stream downloads from this one"
        ),
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
