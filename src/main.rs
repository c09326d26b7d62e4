//! The `granary` binary: parse flags, load the configuration, start tracing, serve.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use granary::config::{self, ConfigSources, RepoFlag};
use tracing_subscriber::EnvFilter;

/// A caching proxy for package registries.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve every configured repository.
    Serve(ServeArgs),
    /// Print the effective configuration (credentials redacted) and exit.
    PrintConfig(ServeArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Configuration file (default: ./granary.toml if it exists).
    #[arg(long, env = "GRANARY_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on; overrides `listen`.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory; overrides `data_dir`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Log filter, e.g. `info` or `granary=debug`; overrides `log`.
    #[arg(long)]
    log: Option<String>,
    /// A repository as FORMAT:NAME=UPSTREAM, e.g. pypi:pypi=http://127.0.0.1:9000/simple/
    #[arg(long = "repo", value_name = "FORMAT:NAME=UPSTREAM")]
    repos: Vec<RepoFlag>,
}

impl ServeArgs {
    fn sources(&self) -> ConfigSources {
        ConfigSources {
            file: self.config.clone(),
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            log: self.log.clone(),
            repos: self.repos.clone(),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = config::load(&args.sources())?;
            init_tracing(&config.log)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(granary::server::run(
                config,
                granary::server::shutdown_signal(),
            ))
        }
        Command::PrintConfig(args) => {
            let config = config::load(&args.sources())?;
            let text = format!("{config:#?}\n");
            std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes())
                .context("cannot write to stdout")
        }
    }
}

fn init_tracing(filter: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter)
        .with_context(|| format!("invalid log filter `{filter}` (setting `log`)"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    Ok(())
}
