//! `Cargo.lock` for `granary warm`: the registry's `config.json`, and every
//! registry package's index file and `.crate`.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::index::{index_path, is_valid_crate_name, is_valid_version};
use crate::protocols::warm::WarmFetch;

#[derive(Deserialize)]
struct Lock {
    #[serde(default)]
    package: Vec<Package>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    version: String,
    source: Option<String>,
}

/// # Errors
/// Another kind of file, or a lockfile that does not parse.
pub fn plan(file_name: &str, text: &str) -> Result<Vec<WarmFetch>, String> {
    if file_name != "Cargo.lock" {
        return Err(format!(
            "`{file_name}`: a cargo repository is warmed from Cargo.lock"
        ));
    }
    let lock: Lock = toml::from_str(text).map_err(|e| format!("{file_name}: {e}"))?;
    // Packages from a registry (git and path dependencies have other sources or none).
    let packages: BTreeSet<(&str, &str)> = lock
        .package
        .iter()
        .filter(|p| {
            p.source
                .as_deref()
                .is_some_and(|s| s.starts_with("registry+") || s.starts_with("sparse+"))
        })
        .filter(|p| is_valid_crate_name(&p.name) && is_valid_version(&p.version))
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    let mut fetches = vec![WarmFetch::new("config.json".to_owned())];
    let names: BTreeSet<String> = packages.iter().map(|(name, _)| index_path(name)).collect();
    fetches.extend(names.into_iter().map(WarmFetch::new));
    fetches.extend(
        packages.iter().map(|(name, version)| {
            WarmFetch::new(format!("api/v1/crates/{name}/{version}/download"))
        }),
    );
    Ok(fetches)
}

#[cfg(test)]
mod tests {
    use super::plan;

    #[test]
    fn registry_packages_only() {
        let lock = r#"
version = 4

[[package]]
name = "app"
version = "0.1.0"
dependencies = ["serde"]

[[package]]
name = "serde"
version = "1.0.200"
source = "registry+https://127.0.0.2/index"
checksum = "00"

[[package]]
name = "fx-util"
version = "0.2.0"
source = "sparse+http://127.0.0.2/cargo/"

[[package]]
name = "from-git"
version = "0.1.0"
source = "git+https://127.0.0.2/x.git#abc"
"#;
        let paths: Vec<String> = plan("Cargo.lock", lock)
            .expect("plan")
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(
            paths,
            [
                "config.json",
                "fx/-u/fx-util",
                "se/rd/serde",
                "api/v1/crates/fx-util/0.2.0/download",
                "api/v1/crates/serde/1.0.200/download"
            ]
        );
        assert!(plan("Cargo.toml", lock).is_err());
    }
}
