//! Loading: defaults, then the file, then `GRANARY_*` variables, then CLI flags.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::Figment;
use url::Url;

use super::types::{Config, Format};

/// Where configuration comes from, besides the environment.
#[derive(Debug, Default, Clone)]
pub struct ConfigSources {
    /// `--config`; `None` means `./granary.toml` if it exists.
    pub file: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<std::net::SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--log`.
    pub log: Option<String>,
    /// `--repo FORMAT:NAME=UPSTREAM`, repeatable.
    pub repos: Vec<RepoFlag>,
}

/// A repository given on the command line as `FORMAT:NAME=UPSTREAM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoFlag {
    pub format: Format,
    pub name: String,
    pub upstream: Url,
}

impl FromStr for RepoFlag {
    type Err = String;

    fn from_str(flag: &str) -> Result<Self, Self::Err> {
        let usage = || {
            format!("`{flag}`: expected FORMAT:NAME=UPSTREAM, e.g. pypi:pypi=http://127.0.0.1:9000/simple/")
        };
        let (format, rest) = flag.split_once(':').ok_or_else(usage)?;
        let (name, upstream) = rest.split_once('=').ok_or_else(usage)?;
        let format = match format {
            "pypi" => Format::Pypi,
            "npm" => Format::Npm,
            "cargo" => Format::Cargo,
            "maven" => Format::Maven,
            "http" => Format::Http,
            other => {
                return Err(format!(
                    "`{other}`: unknown repository format (known: pypi, npm, cargo, maven, http)"
                ))
            }
        };
        let upstream = Url::parse(upstream).map_err(|e| format!("`{upstream}`: {e}"))?;
        Ok(Self {
            format,
            name: name.to_owned(),
            upstream,
        })
    }
}

/// The keys of [`Config`], the only ones the environment overlay reads.
const TOP_LEVEL_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "log",
    "shutdown_grace",
    "header_read_timeout",
    "cache",
    "repos",
];

/// Loads and validates the configuration.
///
/// # Errors
/// An unreadable or malformed file, an unknown key, a repository without an upstream
/// or with an invalid name: each error names the file and the key.
pub fn load(sources: &ConfigSources) -> anyhow::Result<Config> {
    let mut figment = Figment::new();
    if let Some(path) = &sources.file {
        ensure_readable(path)?;
        figment = figment.merge(Toml::file_exact(path));
    } else {
        let default_path = Path::new("granary.toml");
        if default_path.exists() {
            figment = figment.merge(Toml::file_exact(default_path));
        }
    }
    // Only variables that name a top-level setting are configuration: other tools
    // (and tests) use the prefix too. Unknown keys *inside* a section still fail.
    figment = figment.merge(
        Env::prefixed("GRANARY_")
            .filter(|key| {
                let top = key.as_str().split("__").next().unwrap_or("");
                TOP_LEVEL_KEYS
                    .iter()
                    .any(|known| top.eq_ignore_ascii_case(known))
            })
            .split("__"),
    );
    if let Some(listen) = sources.listen {
        figment = figment.merge(Serialized::default("listen", listen));
    }
    if let Some(data_dir) = &sources.data_dir {
        figment = figment.merge(Serialized::default("data_dir", data_dir));
    }
    if let Some(log) = &sources.log {
        figment = figment.merge(Serialized::default("log", log));
    }
    for repo in &sources.repos {
        figment = figment
            .merge(Serialized::default(
                &format!("repos.{}.format", repo.name),
                repo.format,
            ))
            .merge(Serialized::default(
                &format!("repos.{}.upstream", repo.name),
                repo.upstream.as_str(),
            ));
    }

    checked(&figment)
}

/// Parses and validates a configuration given as TOML text alone (no environment
/// overlay, no flags): what `load` does with a file.
///
/// # Errors
/// As [`load`].
pub fn from_toml(text: &str) -> anyhow::Result<Config> {
    checked(&Figment::new().merge(Toml::string(text)))
}

fn checked(figment: &Figment) -> anyhow::Result<Config> {
    let mut config: Config = figment.extract().map_err(|error| {
        // figment prefixes keys with its profile (`default.`), which users never wrote.
        let messages: Vec<String> = error
            .into_iter()
            .map(|e| e.to_string().replace("key \"default.", "key \""))
            .collect();
        anyhow::anyhow!("invalid configuration: {}", messages.join("; "))
    })?;
    validate(&mut config)?;
    validate_backends(&config)?;
    Ok(config)
}

fn ensure_readable(path: &Path) -> anyhow::Result<()> {
    std::fs::metadata(path)
        .with_context(|| format!("cannot read configuration file `{}`", path.display()))?;
    Ok(())
}

/// Checks what serde cannot: repository names, upstream URLs, at least one repository.
fn validate(config: &mut Config) -> anyhow::Result<()> {
    if config.repos.is_empty() {
        bail!("no repositories configured: add a `[repos.NAME]` table with `format` and `upstream`, or pass --repo FORMAT:NAME=UPSTREAM");
    }
    for (name, repo) in &mut config.repos {
        if !is_valid_repo_name(name) {
            bail!("`repos.{name}`: a repository name is lowercase letters, digits, `.`, `_` and `-`, starts with a letter or digit, and is at most 64 characters");
        }
        if !matches!(repo.upstream.scheme(), "http" | "https") {
            bail!(
                "`repos.{name}.upstream`: `{}` is not an http(s) URL",
                repo.upstream
            );
        }
        if repo.upstream.host().is_none() {
            bail!("`repos.{name}.upstream`: `{}` has no host", repo.upstream);
        }
        // Index paths are joined onto the root, so the root must end with `/`.
        if !repo.upstream.path().ends_with('/') {
            let path = format!("{}/", repo.upstream.path());
            repo.upstream.set_path(&path);
        }
    }
    Ok(())
}

fn validate_backends(config: &Config) -> anyhow::Result<()> {
    if let Some(url) = &config.storage.blob_store {
        if url.scheme() != "s3" || url.host_str().is_none() {
            bail!("`storage.blob_store`: `{url}` must be s3://bucket/prefix");
        }
    }
    if let Some(url) = &config.metadata.database_url {
        if !url.0.starts_with("postgres://") && !url.0.starts_with("postgresql://") {
            bail!("`metadata.database_url`: only postgres:// URLs are supported (leave it out for the embedded database)");
        }
    }
    if let Some(redis) = &config.redis {
        if !redis.url.0.starts_with("redis://") && !redis.url.0.starts_with("rediss://") {
            bail!("`redis.url`: expected redis://host:port");
        }
        let ttl = redis.artifact_lock_ttl.0;
        if ttl < Duration::from_millis(30) {
            bail!("`redis.artifact_lock_ttl`: {} is too short; the lock is renewed every third of it, so it must be at least 30ms (default 30s)", humantime::format_duration(ttl));
        }
        if redis.artifact_wait.0 < ttl {
            bail!(
                "`redis.artifact_wait` ({}) is shorter than `redis.artifact_lock_ttl` ({}): a replica would give up before a dead holder's lock expires",
                humantime::format_duration(redis.artifact_wait.0),
                humantime::format_duration(ttl)
            );
        }
        if redis.timeout.0.is_zero() {
            bail!("`redis.timeout`: must be more than 0s");
        }
        if let Some(secret) = &redis.replica_secret {
            if secret.0.len() < 16 {
                bail!("`redis.replica_secret`: at least 16 characters (it lets a caller read downloads in flight)");
            }
        }
        if let Some(url) = &redis.replica_url {
            let parsed = Url::parse(url)
                .with_context(|| format!("`redis.replica_url`: `{url}` is not a URL"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                bail!("`redis.replica_url`: expected http://host:port, got `{url}`");
            }
            if url.contains(' ') {
                bail!("`redis.replica_url`: must not contain spaces");
            }
        }
    }
    if config.metadata.timeout.0.is_zero() {
        bail!("`metadata.timeout`: must be more than 0s");
    }
    if config.max_concurrent_requests == 0 {
        bail!("`max_concurrent_requests`: must be at least 1");
    }
    for (name, repo) in &config.repos {
        if repo.format != super::types::Format::Http
            && (!repo.rules.is_empty() || !repo.bypass_cookies.is_empty())
        {
            bail!("`repos.{name}.rules` and `bypass_cookies` are for `format = \"http\"` repositories");
        }
        if repo.max_concurrent_fills == 0 {
            bail!("`repos.{name}.max_concurrent_fills`: must be at least 1");
        }
        if repo.update_time.0.is_zero() {
            bail!("`repos.{name}.update_time`: must be more than 0s (the refresh lock lives this long)");
        }
    }
    Ok(())
}

fn is_valid_repo_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

#[cfg(test)]
// figment's Jail API fixes the closure's error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_config(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write config");
        file
    }

    /// Runs `f` under figment's global jail lock: one test below changes the process
    /// environment, and no other load may observe it.
    fn jailed<T>(f: impl FnOnce() -> T) -> T {
        let mut output = None;
        figment::Jail::expect_with(|_| {
            output = Some(f());
            Ok(())
        });
        output.expect("the jail ran the closure")
    }

    fn load_jailed(sources: &ConfigSources) -> anyhow::Result<Config> {
        jailed(|| load(sources))
    }

    fn load_file(text: &str) -> anyhow::Result<Config> {
        let file = write_config(text);
        load_jailed(&ConfigSources {
            file: Some(file.path().to_path_buf()),
            ..ConfigSources::default()
        })
    }

    #[test]
    fn minimal_file_is_complete() {
        let config = load_file(
            "listen = \"127.0.0.1:8080\"\ndata_dir = \"./granary-data\"\n\n[repos.pypi]\nformat = \"pypi\"\nupstream = \"http://127.0.0.1:9000/simple/\"\n",
        )
        .expect("minimal config loads");
        let repo = &config.repos["pypi"];
        assert_eq!(repo.format, Format::Pypi);
        assert_eq!(repo.index_ttl.0, std::time::Duration::from_secs(300));
    }

    #[test]
    fn example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
        let config = load_jailed(&ConfigSources {
            file: Some(path),
            ..ConfigSources::default()
        })
        .expect("config/example.toml loads");
        let formats: Vec<Format> = ["pypi", "npm", "crates", "maven"]
            .iter()
            .map(|name| config.repos[*name].format)
            .collect();
        assert_eq!(
            formats,
            [Format::Pypi, Format::Npm, Format::Cargo, Format::Maven]
        );
        let flag: RepoFlag = "maven:central=http://127.0.0.1:1/maven2/"
            .parse()
            .expect("every format has a flag spelling");
        assert_eq!(flag.format, Format::Maven);
    }

    #[test]
    fn unknown_key_is_named() {
        let error = load_file("[repos.pypi]\nformat = \"pypi\"\nupstream = \"http://127.0.0.1:1/simple/\"\nindex_tll = \"5m\"\n")
            .expect_err("typo must fail");
        let message = error.to_string();
        assert!(message.contains("index_tll"), "{message}");
    }

    #[test]
    fn missing_upstream_is_named() {
        let error = load_file("[repos.pypi]\nformat = \"pypi\"\n").expect_err("no upstream");
        let message = error.to_string();
        assert!(message.contains("upstream"), "{message}");
        assert!(message.contains("repos.pypi"), "{message}");
    }

    #[test]
    fn unreadable_file_is_named() {
        let error = load_jailed(&ConfigSources {
            file: Some(PathBuf::from("/nonexistent/granary.toml")),
            ..ConfigSources::default()
        })
        .expect_err("missing file");
        assert!(error.to_string().contains("/nonexistent/granary.toml"));
    }

    #[test]
    fn no_repositories_is_an_error() {
        let error = load_file("listen = \"127.0.0.1:0\"\n").expect_err("no repos");
        assert!(error.to_string().contains("no repositories"));
    }

    #[test]
    fn repo_flag_parses_and_adds_a_repository() {
        let flag: RepoFlag = "pypi:internal=http://127.0.0.1:9000/simple"
            .parse()
            .expect("valid flag");
        assert_eq!(flag.name, "internal");
        let file = write_config("log = \"debug\"\n");
        let config = load_jailed(&ConfigSources {
            file: Some(file.path().to_path_buf()),
            repos: vec![flag],
            ..ConfigSources::default()
        })
        .expect("flag makes a complete config");
        assert_eq!(
            config.repos["internal"].upstream.as_str(),
            "http://127.0.0.1:9000/simple/",
            "a trailing slash is added"
        );
        assert!("maven:x".parse::<RepoFlag>().is_err());
    }

    #[test]
    fn environment_overrides_the_file_and_ignores_foreign_variables() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "granary.toml",
                "listen = \"127.0.0.1:8080\"\n[repos.pypi]\nformat = \"pypi\"\nupstream = \"http://127.0.0.1:1/simple/\"\n",
            )?;
            jail.set_env("GRANARY_LISTEN", "127.0.0.1:9999");
            jail.set_env("GRANARY_REPOS__PYPI__INDEX_TTL", "10m");
            jail.set_env("GRANARY_TEST_SOMETHING", "not configuration");
            let config = load(&ConfigSources::default()).map_err(|e| e.to_string())?;
            assert_eq!(config.listen.port(), 9999);
            assert_eq!(
                config.repos["pypi"].index_ttl.0,
                std::time::Duration::from_secs(600)
            );
            let with_flag = load(&ConfigSources {
                listen: Some("127.0.0.1:7777".parse().expect("addr")),
                ..ConfigSources::default()
            })
            .map_err(|e| e.to_string())?;
            assert_eq!(with_flag.listen.port(), 7777, "CLI beats the environment");
            jail.set_env("GRANARY_REPOS__PYPI__INDEX_TLL", "10m");
            assert!(
                load(&ConfigSources::default()).is_err(),
                "typo inside a section fails"
            );
            Ok(())
        });
    }

    #[test]
    fn bad_repo_name_is_rejected() {
        let error = load_file(
            "[repos.\"Bad Name\"]\nformat = \"pypi\"\nupstream = \"http://127.0.0.1:1/\"\n",
        )
        .expect_err("bad name");
        assert!(error.to_string().contains("Bad Name"));
    }

    #[test]
    fn settings_that_contradict_each_other_are_named() {
        let with_redis = |redis: &str| {
            load_file(&format!(
                "[redis]\nurl = \"redis://127.0.0.1:6379\"\n{redis}\n\n[repos.p]\nformat = \"pypi\"\nupstream = \"http://127.0.0.1:1/simple/\"\n"
            ))
        };
        let zero = with_redis("artifact_lock_ttl = \"0s\"").expect_err("a zero lock ttl");
        assert!(
            zero.to_string().contains("`redis.artifact_lock_ttl`"),
            "{zero}"
        );
        let short = with_redis("artifact_lock_ttl = \"60s\"\nartifact_wait = \"10s\"")
            .expect_err("a wait shorter than the lock");
        assert!(
            short.to_string().contains("`redis.artifact_wait`"),
            "{short}"
        );
        assert!(
            short.to_string().contains("`redis.artifact_lock_ttl`"),
            "{short}"
        );
        with_redis("artifact_lock_ttl = \"2s\"\nartifact_wait = \"60s\"").expect("consistent");
        let weak = with_redis("replica_secret = \"short\"").expect_err("a short secret");
        assert!(
            weak.to_string().contains("`redis.replica_secret`"),
            "{weak}"
        );
        let nowhere = with_redis("replica_url = \"ftp://replica-a\"").expect_err("not http");
        assert!(
            nowhere.to_string().contains("`redis.replica_url`"),
            "{nowhere}"
        );
        with_redis(
            "replica_secret = \"0123456789abcdef0123\"\nreplica_url = \"http://127.0.0.2:8080\"",
        )
        .expect("streaming between replicas");
        let fills = load_file(
            "[repos.p]\nformat = \"pypi\"\nupstream = \"http://127.0.0.1:1/simple/\"\nmax_concurrent_fills = 0\n",
        )
        .expect_err("no fills at all");
        assert!(
            fills.to_string().contains("`repos.p.max_concurrent_fills`"),
            "{fills}"
        );
    }

    #[test]
    fn user_password_hashes_are_redacted_in_print_config() {
        let config = load_file(
            "admin_token = \"admin-secret\"\n[auth.users.alice]\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g\"\n\
             [repos.p]\nformat = \"pypi\"\nupstream = \"http://127.0.0.1:1/simple/\"\n",
        )
        .expect("config");
        let printed = format!("{config:#?}");
        assert!(printed.contains("alice"), "{printed}");
        assert!(!printed.contains("argon2"), "{printed}");
        assert!(!printed.contains("admin-secret"), "{printed}");
    }

    #[test]
    fn credentials_are_redacted_in_debug() {
        let config = load_file("[repos.p]\nformat = \"pypi\"\nupstream = \"http://127.0.0.1:1/\"\nauth = { username = \"u\", password = \"hunter2\" }\n")
            .expect("auth parses");
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }
}
