//! The `granary` binary: parse flags, load the configuration, start tracing, serve.

use std::fmt::Write as _;
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
    /// Remove orphaned blobs and rows, then evict least recently used artifacts down
    /// to `storage.max_size` (or --max-size). Run it with the server stopped.
    Gc {
        #[command(flatten)]
        args: ServeArgs,
        /// Evict down to this size, e.g. `10GiB`; overrides `storage.max_size`.
        #[arg(long)]
        max_size: Option<bytesize::ByteSize>,
    },
    /// Print a running granary's status (`/-/status.json`) as a table.
    Status {
        /// Where granary listens, e.g. `http://127.0.0.1:8080`.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// `admin_token` or a token of a user with the admin role: the full view.
        #[arg(long, env = "GRANARY_ADMIN_TOKEN")]
        token: Option<String>,
    },
    /// Print an argon2id hash of a password read from standard input, for
    /// `auth.users.NAME.password_hash`.
    HashPassword,
    /// API tokens for clients (`__token__` with pip and uv, `_authToken` with npm,
    /// cargo's token, Maven's password).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Fill a running granary with everything the given lockfiles need (what a real
    /// client would fetch for them), so builds can later run without the upstream.
    /// Reads package-lock.json / npm-shrinkwrap.json / pnpm-lock.yaml / yarn.lock
    /// (npm), Cargo.lock (cargo), requirements files, uv.lock and pylock.toml
    /// (PyPI; unpinned requirements are resolved by granary first), a project's
    /// pom.xml (Maven; resolved by granary first).
    Warm {
        /// Configuration file (default: ./granary.toml if it exists): the repository's
        /// format, and where granary listens.
        #[arg(long, env = "GRANARY_CONFIG")]
        config: Option<PathBuf>,
        /// The repository to warm, by its name in the configuration.
        #[arg(long)]
        repo: String,
        /// granary's URL, e.g. `http://127.0.0.1:8080` (default: `public_url`, else
        /// `http://` + `listen`).
        #[arg(long, conflicts_with = "in_process")]
        url: Option<url::Url>,
        /// Run granary's engine in this process on the configured stores instead of
        /// asking a running granary (which must not be using the same `data_dir`).
        #[arg(long)]
        in_process: bool,
        /// A token of a user who may read the repository (sent as a bearer token).
        #[arg(long, env = "GRANARY_TOKEN")]
        token: Option<String>,
        /// Fetches at once.
        #[arg(long, default_value_t = 8)]
        parallel: usize,
        /// The environment unpinned requirements are resolved for (PyPI:
        /// `PYTHON[-OS[-MACHINE]]`, e.g. `3.12-linux-x86_64`; the resolver's default
        /// when absent).
        #[arg(long)]
        target: Option<String>,
        /// Lockfiles to read.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Re-hash every stored blob and report corrupt ones. Safe beside a running
    /// server; with --repair, run it with the server stopped.
    Verify {
        #[command(flatten)]
        args: ServeArgs,
        /// Remove corrupt blobs and their rows (they are fetched again on demand).
        #[arg(long)]
        repair: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token for a user and print it once; only its hash is stored.
    Create {
        #[command(flatten)]
        args: ServeArgs,
        /// The user the token authenticates as.
        #[arg(long)]
        user: String,
        /// Lifetime, e.g. `90d`; absent: no expiry.
        #[arg(long)]
        expires: Option<humantime::Duration>,
    },
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
            runtime()?.block_on(granary::server::run(
                config,
                granary::server::shutdown_signal(),
            ))
        }
        Command::Gc { args, max_size } => {
            let config = config::load(&args.sources())?;
            init_tracing(&config.log)?;
            let max_bytes = max_size
                .or(config.storage.max_size)
                .map(|size| size.as_u64());
            let report = runtime()?.block_on(async {
                let state = granary::server::AppState::build(&config).await?;
                let mut shown = progress_display("gc");
                let report = state
                    .engine
                    .artifacts
                    .collect_garbage_with(max_bytes, |step| shown.update(step))
                    .await?;
                shown.finish();
                anyhow::Ok(report)
            })?;
            say(&format!(
                "gc: removed {} orphaned blobs ({} bytes) and {} dangling rows; evicted {} blobs ({} bytes); {} bytes stored; {} skipped in use\n",
                report.orphan_blobs,
                report.orphan_bytes,
                report.dangling_rows,
                report.eviction.evicted_blobs,
                report.eviction.freed_bytes,
                report.eviction.stored_bytes_after,
                report.eviction.skipped_in_use,
            ))
        }
        Command::Verify { args, repair } => {
            let config = config::load(&args.sources())?;
            init_tracing(&config.log)?;
            let report = runtime()?.block_on(async {
                // Verifying only reads, so it runs beside a server; repairing writes,
                // so it needs `data_dir` to itself.
                let state = if repair {
                    granary::server::AppState::build(&config).await?
                } else {
                    granary::server::AppState::build_read_only(&config).await?
                };
                let mut shown = progress_display("verify");
                let report = state
                    .engine
                    .artifacts
                    .verify_with(repair, |step| shown.update(step))
                    .await?;
                shown.finish();
                anyhow::Ok(report)
            })?;
            let mut text = format!(
                "verify: checked {} blobs, {} corrupt, {} removed\n",
                report.checked,
                report.corrupt.len(),
                report.removed
            );
            for digest in &report.corrupt {
                writeln!(text, "corrupt: {digest}")?;
            }
            say(&text)?;
            if !report.corrupt.is_empty() && !repair {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Warm {
            config,
            repo,
            url,
            in_process,
            token,
            parallel,
            target,
            files,
        } => {
            let sources = ConfigSources {
                file: config,
                ..ConfigSources::default()
            };
            let config = config::load(&sources)?;
            warm(
                &config,
                &repo,
                if in_process {
                    WarmVia::InProcess
                } else {
                    WarmVia::Url(url)
                },
                token,
                parallel,
                target.as_deref(),
                &files,
            )
        }
        Command::Status { url, token } => {
            let report = runtime()?.block_on(async {
                let client = reqwest::Client::new();
                let mut request =
                    client.get(format!("{}/-/status.json", url.trim_end_matches('/')));
                if let Some(token) = &token {
                    request = request.bearer_auth(token);
                }
                let response = request
                    .send()
                    .await
                    .with_context(|| format!("cannot reach granary at `{url}`"))?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "granary at `{url}` answered {}: {}",
                    response.status(),
                    response.text().await.unwrap_or_default().trim()
                );
                let body = response
                    .bytes()
                    .await
                    .context("granary's status was cut off")?;
                serde_json::from_slice::<serde_json::Value>(&body)
                    .context("granary's status is not JSON")
            })?;
            say(&granary::status::table::render(&report))
        }
        Command::HashPassword => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("cannot read the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!password.is_empty(), "the password is empty");
            let hash = granary::access::hash_password(password)?;
            say(&format!("{hash}\n"))
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    args,
                    user,
                    expires,
                },
        } => {
            let config = config::load(&args.sources())?;
            init_tracing(&config.log)?;
            let token = granary::access::new_token();
            runtime()?.block_on(async {
                let metadata = granary::server::state::open_metadata_store(&config).await?;
                let now = std::time::SystemTime::now();
                metadata
                    .put_api_token(&granary::metadata::ApiTokenRecord {
                        hash: granary::access::token_hash(&token),
                        user: user.clone(),
                        created_at: now,
                        expires_at: expires.map(|lifetime| now + *lifetime),
                    })
                    .await
                    .context("cannot store the token")?;
                anyhow::Ok(())
            })?;
            say(&format!("{token}\n"))
        }
        Command::PrintConfig(args) => {
            let config = config::load(&args.sources())?;
            say(&format!("{config:#?}\n"))
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        // File reads run on the blocking pool; a bounded pool bounds the memory its
        // threads (and their allocator caches) hold. 64 keeps disks busy.
        .max_blocking_threads(granary::server::MAX_BLOCKING_THREADS)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Which granary `granary warm` fills.
enum WarmVia {
    /// A running one, at this URL (default: `public_url`, else `listen`).
    Url(Option<url::Url>),
    /// The engine of this process, on the configured stores.
    InProcess,
}

/// How long `granary warm --in-process` waits, at the end, for what it fetched to be
/// stored (publishes, shared-tier writes, dependency extraction).
const IN_PROCESS_SETTLE: std::time::Duration = std::time::Duration::from_secs(600);

/// Command output for people (logs go to stderr).
fn warm(
    config: &config::Config,
    repo: &str,
    via: WarmVia,
    token: Option<String>,
    parallel: usize,
    resolve_for: Option<&str>,
    files: &[PathBuf],
) -> anyhow::Result<()> {
    let repo_config = config
        .repos
        .get(repo)
        .with_context(|| format!("no repository `{repo}` in the configuration"))?;
    let runtime = runtime()?;
    let (root, engine) = match via {
        WarmVia::Url(url) => {
            let root = match url {
                Some(url) => url,
                None => match &config.public_url {
                    Some(url) => url.clone(),
                    None => url::Url::parse(&format!("http://{}/", config.listen))
                        .context("`listen` does not make a URL")?,
                },
            };
            (root, None)
        }
        WarmVia::InProcess => {
            let state = runtime
                .block_on(granary::server::AppState::build(config))
                .context(
                    "cannot open the configured stores (a granary serving this `data_dir` \
                     holds them: warm it over HTTP instead)",
                )?;
            let root = url::Url::parse("http://granary.invalid/").context("a URL")?;
            (root, Some(state))
        }
    };
    let mut root = root;
    if !root.path().ends_with('/') {
        let path = format!("{}/", root.path());
        root.set_path(&path);
    }
    let base = root
        .join(&format!("{repo}/"))
        .context("granary's URL and the repository do not make a URL")?;
    let target = granary::warm::Target {
        base,
        authorization: token.map(|t| format!("Bearer {t}")),
        parallel,
        transport: match &engine {
            Some(state) => {
                granary::warm::Transport::InProcess(granary::server::router(state.clone()))
            }
            None => granary::warm::Transport::Http,
        },
    };
    let mut plan = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read `{}`", file.display()))?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if granary::protocols::warm_needs_resolution(repo_config.format, &name, &text) {
            // Unpinned requirements, a project's pom.xml: granary's resolver pins the
            // tree first.
            let mut api = root
                .join(&format!("-/api/{repo}/resolve"))
                .context("granary's URL and the repository do not make a URL")?;
            if let Some(resolve_for) = resolve_for {
                api.query_pairs_mut().append_pair("target", resolve_for);
            }
            let (pins, warnings) = runtime
                .block_on(granary::warm::resolve_pins(&target, api, text))
                .map_err(|reason| anyhow::anyhow!("{}: {reason}", file.display()))?;
            say(&format!(
                "{}: resolved by granary to {} pinned packages\n",
                file.display(),
                pins.len()
            ))?;
            for warning in warnings {
                say(&format!("{}: warning: {warning}\n", file.display()))?;
            }
            plan.extend(
                granary::protocols::warm_plan_of_pins(repo_config.format, &pins)
                    .map_err(|reason| anyhow::anyhow!("{}: {reason}", file.display()))?,
            );
            continue;
        }
        plan.extend(
            granary::protocols::warm_plan(repo_config.format, &name, &text)
                .map_err(|reason| anyhow::anyhow!("{}: {reason}", file.display()))?,
        );
    }
    let bar = std::io::IsTerminal::is_terminal(&std::io::stdout()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "warming [{bar:30}] {pos}/{len} files, {msg} ({eta} left)",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    let started = std::time::Instant::now();
    let mut bytes = 0u64;
    let summary = runtime.block_on(granary::warm::run(&target, plan, |done, known| {
        bytes += done.bytes;
        let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let rate = bytes.saturating_mul(1000) / millis.max(1);
        if let Some(bar) = &bar {
            bar.set_length(known as u64);
            bar.inc(1);
            bar.set_message(format!(
                "{}, {}/s",
                granary::status::page::bytes(bytes),
                granary::status::page::bytes(rate)
            ));
        } else {
            let outcome = match &done.outcome {
                granary::warm::Outcome::Fetched => "fetched".to_owned(),
                granary::warm::Outcome::Cached => "cached".to_owned(),
                granary::warm::Outcome::Failed(reason) => format!("FAILED {reason}"),
            };
            let _ = say(&format!(
                "{outcome:>8} {:>10}  {}\n",
                granary::status::page::bytes(done.bytes),
                done.path
            ));
        }
    }));
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(state) = &engine {
        anyhow::ensure!(
            runtime.block_on(state.settle(IN_PROCESS_SETTLE)),
            "what was fetched was not all stored within {IN_PROCESS_SETTLE:?}"
        );
    }
    let mut report = format!(
        "warmed {} files in {:.1} s: {} fetched from the upstream, {} already cached, {} failed; {}\n",
        summary.total(),
        summary.elapsed.as_secs_f64(),
        summary.fetched,
        summary.cached,
        summary.failed.len(),
        granary::status::page::bytes(summary.bytes)
    );
    for (path, reason) in &summary.failed {
        let _ = writeln!(report, "  failed: {path}: {reason}");
    }
    say(&report)?;
    anyhow::ensure!(
        summary.failed.is_empty(),
        "{} of {} files could not be warmed",
        summary.failed.len(),
        summary.total()
    );
    Ok(())
}

fn say(text: &str) -> anyhow::Result<()> {
    std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes())
        .context("cannot write to stdout")
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

/// Progress of a pass over every blob: a bar (blobs, bytes, ETA) on a terminal, plain
/// lines (every 5 seconds, and at the end) otherwise.
enum ProgressDisplay {
    Bar(indicatif::ProgressBar),
    Lines {
        what: &'static str,
        last: std::time::Instant,
        step: granary::engine::Progress,
    },
}

fn progress_display(what: &'static str) -> ProgressDisplay {
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {pos}/{len} blobs, {prefix} ({eta} left)",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(what);
        ProgressDisplay::Bar(bar)
    } else {
        ProgressDisplay::Lines {
            what,
            last: std::time::Instant::now(),
            step: granary::engine::Progress::default(),
        }
    }
}

impl ProgressDisplay {
    fn update(&mut self, step: granary::engine::Progress) {
        match self {
            Self::Bar(bar) => {
                bar.set_length(step.blobs_total);
                bar.set_position(step.blobs_done);
                bar.set_prefix(format!(
                    "{} of {}",
                    granary::status::page::bytes(step.bytes_done),
                    granary::status::page::bytes(step.bytes_total)
                ));
            }
            Self::Lines {
                what,
                last,
                step: current,
            } => {
                *current = step;
                if last.elapsed() >= std::time::Duration::from_secs(5) {
                    *last = std::time::Instant::now();
                    let _ = say(&progress_line(what, step));
                }
            }
        }
    }

    fn finish(self) {
        match self {
            Self::Bar(bar) => bar.finish_and_clear(),
            Self::Lines { what, step, .. } => {
                let _ = say(&progress_line(what, step));
            }
        }
    }
}

fn progress_line(what: &str, step: granary::engine::Progress) -> String {
    format!(
        "{what}: {}/{} blobs, {} of {}\n",
        step.blobs_done,
        step.blobs_total,
        granary::status::page::bytes(step.bytes_done),
        granary::status::page::bytes(step.bytes_total)
    )
}
