//! Resolving a crate version's dependency tree from the sparse index, as cargo's
//! resolver does for a consumer: the highest non-yanked version matching each
//! requirement, one version per semver-compatible range (`1.x`, `0.3.x`, `0.0.4`),
//! backtracking when a later requirement rules out the chosen one; features unified
//! across every dependent to decide which optional dependencies are on; normal and
//! build dependencies (a dependency's dev-dependencies are never part of it); `cfg()`
//! targets evaluated for the asked target triple, or all kept (as `Cargo.lock` does).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use semver::{Version, VersionReq};
use serde::Deserialize;

use crate::protocols::resolution::{Graph, GraphBuilder, ResolveOptions, MAX_NODES};

/// The target when none is asked: every target's dependencies, like `Cargo.lock`.
pub const ALL_TARGETS: &str = "all";
/// Bound on restarts after a conflict (each pins one semver-compatible range).
const MAX_ROUNDS: usize = 32;

/// One version of a crate, from its index line.
#[derive(Debug, Clone, Deserialize)]
pub struct Candidate {
    pub name: String,
    #[serde(rename = "vers")]
    pub version: String,
    #[serde(rename = "cksum", default)]
    pub checksum: Option<String>,
    #[serde(default)]
    pub yanked: bool,
    #[serde(default)]
    pub deps: Vec<IndexDep>,
    #[serde(default)]
    pub features: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub features2: BTreeMap<String, Vec<String>>,
    /// `version` parsed, once per stored index file (`None`: not semver).
    #[serde(skip)]
    pub semver: Option<Version>,
}

/// One dependency of an index line.
#[derive(Debug, Clone, Deserialize)]
pub struct IndexDep {
    /// The name the dependent uses (its `[dependencies]` key).
    pub name: String,
    pub req: String,
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default)]
    pub optional: bool,
    #[serde(default = "yes")]
    pub default_features: bool,
    pub target: Option<String>,
    pub kind: Option<String>,
    /// The real crate when renamed.
    pub package: Option<String>,
}

fn yes() -> bool {
    true
}

impl IndexDep {
    fn crate_name(&self) -> &str {
        self.package.as_deref().unwrap_or(&self.name)
    }

    fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or("normal")
    }
}

/// Parses an index file into its versions (lines that do not parse are skipped).
#[must_use]
pub fn candidates(index_file: &[u8]) -> Vec<Candidate> {
    String::from_utf8_lossy(index_file)
        .lines()
        .filter_map(|line| serde_json::from_str::<Candidate>(line).ok())
        .map(|mut candidate| {
            candidate.semver = Version::parse(&candidate.version).ok();
            candidate
        })
        .collect()
}

/// The semver-compatible range a version belongs to: `1.x.y` → `1`, `0.3.y` →
/// `0.3`, `0.0.4` → `0.0.4`.
fn compatible_range(version: &Version) -> (u64, u64, u64) {
    match (version.major, version.minor) {
        (0, 0) => (0, 0, version.patch),
        (0, minor) => (0, minor, u64::MAX),
        (major, _) => (major, u64::MAX, u64::MAX),
    }
}

type Bucket = (String, (u64, u64, u64));

/// Whether a dependency's `target` applies to `target` (`None`: every target).
fn applies(dep_target: Option<&str>, target: Option<&cfg_expr::targets::TargetInfo>) -> bool {
    let (Some(wanted), Some(info)) = (dep_target, target) else {
        return true;
    };
    if !wanted.starts_with("cfg(") {
        return wanted == info.triple.as_str();
    }
    cfg_expr::Expression::parse(wanted).is_ok_and(|expression| {
        expression.eval(|predicate| match predicate {
            cfg_expr::Predicate::Target(target_predicate) => target_predicate.matches(info),
            _ => false,
        })
    })
}

/// The target triple asked for, known to rustc; `None` for every target.
///
/// # Errors
/// A triple rustc does not know.
pub fn check_target(
    target: Option<&str>,
) -> Result<Option<&'static cfg_expr::targets::TargetInfo>, String> {
    match target {
        None | Some(ALL_TARGETS) => Ok(None),
        Some(triple) => cfg_expr::targets::get_builtin_target_by_triple(triple)
            .map(Some)
            .ok_or_else(|| {
                format!("`target={triple}`: not a target triple rustc knows (or `{ALL_TARGETS}`)")
            }),
    }
}

/// What a resolver needs of the index: the versions of a crate, fetched once.
pub trait IndexFiles {
    /// # Errors
    /// Why the crate's index file is not available (not found, upstream down).
    fn versions(
        &mut self,
        name: &str,
    ) -> impl std::future::Future<Output = Result<std::sync::Arc<Vec<Candidate>>, String>> + Send;
}

/// The index as the engine serves it, each crate's file read once per resolution.
pub struct EngineIndex<'a> {
    repo: &'a super::CargoRepo,
    engine: &'a crate::engine::CacheEngine,
    read: HashMap<String, std::sync::Arc<Vec<Candidate>>>,
    /// Every index file read, for [`crate::protocols::resolution::Graph::documents`].
    pub documents: BTreeMap<String, Option<String>>,
}

impl<'a> EngineIndex<'a> {
    #[must_use]
    pub fn new(repo: &'a super::CargoRepo, engine: &'a crate::engine::CacheEngine) -> Self {
        Self {
            repo,
            engine,
            read: HashMap::new(),
            documents: BTreeMap::new(),
        }
    }
}

impl IndexFiles for EngineIndex<'_> {
    async fn versions(&mut self, name: &str) -> Result<std::sync::Arc<Vec<Candidate>>, String> {
        let key = name.to_ascii_lowercase();
        if let Some(read) = self.read.get(&key) {
            return Ok(std::sync::Arc::clone(read));
        }
        if !super::index::is_valid_crate_name(name) {
            return Err(format!("`{name}` is not a crate name"));
        }
        let lookup = self
            .repo
            .index_lookup(self.engine, name)
            .await
            .map_err(|error| error.to_string())?;
        self.documents.insert(
            name.to_owned(),
            crate::protocols::resolution::fingerprint(&lookup.document),
        );
        if !lookup.document.found {
            return Err(format!("no crate named `{name}` in the registry"));
        }
        // Parsed once per stored index file, shared by every resolution reading it.
        let versions = std::sync::Arc::clone(&super::parsed(&lookup.document, name).candidates);
        self.read.insert(key, std::sync::Arc::clone(&versions));
        Ok(versions)
    }
}

struct Active {
    name: String,
    version: Version,
    candidate: Candidate,
    features: BTreeSet<String>,
    node: usize,
}

enum Round {
    Done(GraphBuilder),
    Restart(Bucket, Version),
}

/// Resolves `name` `version` requested with its default features.
///
/// # Errors
/// The root itself cannot be found (every other failure is an error in the graph).
pub async fn resolve(
    index: &mut impl IndexFiles,
    name: &str,
    version: &str,
    options: &ResolveOptions,
) -> Result<Graph, String> {
    let versions = index.versions(name).await?;
    let root = versions
        .iter()
        .find(|c| c.version == version)
        .cloned()
        .ok_or_else(|| format!("crate `{name}` has no version {version}"))?;
    resolve_root(index, &root, options, false).await
}

/// Resolves a project's own `Cargo.toml` as `cargo generate-lockfile` would: its
/// `[dependencies]`, `[build-dependencies]` and `[dev-dependencies]` (a project's
/// own are part of its lockfile), also under `[target.'cfg(…)'.…]`.
///
/// # Errors
/// The file is not a manifest cargo would read, or the target is malformed.
pub async fn resolve_manifest(
    index: &mut impl IndexFiles,
    manifest: &str,
    options: &ResolveOptions,
) -> Result<Graph, String> {
    let root = manifest_candidate(manifest)?;
    resolve_root(index, &root, options, true).await
}

/// A manifest as an index line: its dependencies in the index's terms.
fn manifest_candidate(manifest: &str) -> Result<Candidate, String> {
    let manifest: toml::Table =
        toml::from_str(manifest).map_err(|e| format!("the body is not a Cargo.toml: {e}"))?;
    let package = manifest.get("package").and_then(toml::Value::as_table);
    let text = |key: &str| {
        package
            .and_then(|p| p.get(key))
            .and_then(toml::Value::as_str)
            .map(str::to_owned)
    };
    let mut deps = Vec::new();
    let mut tables: Vec<(Option<String>, &toml::Table)> = vec![(None, &manifest)];
    if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
        for (target, table) in targets {
            if let Some(table) = table.as_table() {
                tables.push((Some(target.clone()), table));
            }
        }
    }
    for (target, table) in tables {
        for (section, kind) in [
            ("dependencies", None),
            ("build-dependencies", Some("build")),
            ("dev-dependencies", Some("dev")),
        ] {
            let Some(entries) = table.get(section).and_then(toml::Value::as_table) else {
                continue;
            };
            for (name, spec) in entries {
                deps.push(manifest_dep(name, spec, target.clone(), kind)?);
            }
        }
    }
    let features = manifest
        .get("features")
        .and_then(toml::Value::as_table)
        .map(|table| {
            table
                .iter()
                .map(|(feature, members)| {
                    let members = members
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(toml::Value::as_str)
                        .map(str::to_owned)
                        .collect();
                    (feature.clone(), members)
                })
                .collect()
        })
        .unwrap_or_default();
    let version = text("version").unwrap_or_else(|| "0.0.0".to_owned());
    Ok(Candidate {
        name: text("name").unwrap_or_else(|| "Cargo.toml".to_owned()),
        semver: Version::parse(&version).ok(),
        version,
        checksum: None,
        yanked: false,
        deps,
        features,
        features2: BTreeMap::new(),
    })
}

/// One `[dependencies]` entry: `name = "req"` or a table.
fn manifest_dep(
    name: &str,
    spec: &toml::Value,
    target: Option<String>,
    kind: Option<&str>,
) -> Result<IndexDep, String> {
    let bad = |why: &str| format!("dependency `{name}`: {why}");
    let (req, table) = match spec {
        toml::Value::String(req) => (req.clone(), None),
        toml::Value::Table(table) => {
            if table.contains_key("path") || table.contains_key("git") {
                return Err(bad(
                    "path and git dependencies are not in a registry; granary resolves registry dependencies only",
                ));
            }
            let req = table
                .get("version")
                .and_then(toml::Value::as_str)
                .unwrap_or("*")
                .to_owned();
            (req, Some(table))
        }
        _ => return Err(bad("expected a version requirement or a table")),
    };
    let flag = |key: &str, default: bool| {
        table
            .and_then(|t| t.get(key))
            .and_then(toml::Value::as_bool)
            .unwrap_or(default)
    };
    Ok(IndexDep {
        name: name.to_owned(),
        req,
        features: table
            .and_then(|t| t.get("features"))
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(toml::Value::as_str)
            .map(str::to_owned)
            .collect(),
        optional: flag("optional", false),
        default_features: flag("default-features", flag("default_features", true)),
        target,
        kind: kind.map(str::to_owned),
        package: table
            .and_then(|t| t.get("package"))
            .and_then(toml::Value::as_str)
            .map(str::to_owned),
    })
}

/// Resolves from a root index line (a registry's, or a project's manifest, whose
/// own dev-dependencies count: `own_dev`).
async fn resolve_root(
    index: &mut impl IndexFiles,
    root: &Candidate,
    options: &ResolveOptions,
    own_dev: bool,
) -> Result<Graph, String> {
    let target_name = options
        .target
        .clone()
        .unwrap_or_else(|| ALL_TARGETS.to_owned());
    let target = check_target(Some(&target_name))?;
    let mut pins: HashMap<Bucket, Version> = HashMap::new();
    for _ in 0..MAX_ROUNDS {
        match round(index, root, options, target, &pins, own_dev).await? {
            Round::Done(graph) => {
                return Ok(graph.finish("cargo", target_name, options.max_depth));
            }
            Round::Restart(bucket, version) => {
                pins.insert(bucket, version);
            }
        }
    }
    Err(format!(
        "resolution did not settle after {MAX_ROUNDS} conflicts"
    ))
}

/// One pass over the graph; a conflict inside a semver-compatible range ends it
/// with the version that range must take (then everything is resolved again).
async fn round(
    index: &mut impl IndexFiles,
    root: &Candidate,
    options: &ResolveOptions,
    target: Option<&cfg_expr::targets::TargetInfo>,
    pins: &HashMap<Bucket, Version>,
    own_dev: bool,
) -> Result<Round, String> {
    let mut graph = GraphBuilder::default();
    let root_version = Version::parse(&root.version)
        .map_err(|e| format!("{} {}: {e}", root.name, root.version))?;
    let mut actives = vec![Active {
        name: root.name.clone(),
        version: root_version.clone(),
        candidate: root.clone(),
        features: BTreeSet::new(),
        node: graph.node(&root.name, &root.version, root.checksum.as_deref()),
    }];
    let mut by_bucket: HashMap<Bucket, usize> = HashMap::new();
    by_bucket.insert((root.name.clone(), compatible_range(&root_version)), 0);
    let mut requirements: HashMap<Bucket, Vec<VersionReq>> = HashMap::new();
    let mut queue: VecDeque<(usize, BTreeSet<String>)> = VecDeque::new();
    queue.push_back((0, BTreeSet::from(["default".to_owned()])));
    while let Some((id, requested)) = queue.pop_front() {
        // Features: what is newly asked of this package, expanded.
        enable(&mut actives[id], requested);
        let (enabled_deps, dep_features) = switched_on(&actives[id]);
        let candidate = actives[id].candidate.clone();
        for dep in &candidate.deps {
            let dev_skipped = dep.kind() == "dev" && !(own_dev && id == 0);
            if dev_skipped || !applies(dep.target.as_deref(), target) {
                continue;
            }
            if dep.optional && !enabled_deps.contains(&dep.name) && !options.include_optional {
                continue;
            }
            let crate_name = dep.crate_name();
            let req = match VersionReq::parse(&dep.req) {
                Ok(req) => req,
                Err(error) => {
                    graph.node_error(
                        actives[id].node,
                        format!("{crate_name} `{}`: {error}", dep.req),
                    );
                    continue;
                }
            };
            let versions = match index.versions(crate_name).await {
                Ok(versions) => versions,
                Err(reason) => {
                    graph.node_error(actives[id].node, format!("{crate_name}: {reason}"));
                    continue;
                }
            };
            let mut matching: Vec<(Version, &Candidate)> = versions
                .iter()
                .filter(|c| !c.yanked)
                .filter_map(|c| Some((c.semver.clone()?, c)))
                .filter(|(v, _)| req.matches(v))
                .collect();
            matching.sort_by(|a, b| b.0.cmp(&a.0));
            // A pinned range allows its pin alone.
            matching.retain(|(v, _)| {
                pins.get(&(crate_name.to_owned(), compatible_range(v)))
                    .is_none_or(|pin| pin == v)
            });
            let Some((chosen, chosen_candidate)) = matching.first().cloned() else {
                graph.node_error(
                    actives[id].node,
                    format!(
                        "failed to select a version for the requirement `{crate_name} = \"{}\"` (required by `{} v{}`)",
                        dep.req, actives[id].name, actives[id].version
                    ),
                );
                continue;
            };
            let bucket = (crate_name.to_owned(), compatible_range(&chosen));
            requirements
                .entry(bucket.clone())
                .or_default()
                .push(req.clone());
            let mut created = false;
            let to = if let Some(&existing) = by_bucket.get(&bucket) {
                if !req.matches(&actives[existing].version) {
                    // One version per compatible range: find one every requirement
                    // on this range allows, and start again with it.
                    let all = &requirements[&bucket];
                    let agreed = versions
                        .iter()
                        .filter(|c| !c.yanked)
                        .filter_map(|c| c.semver.clone())
                        .filter(|v| {
                            compatible_range(v) == bucket.1 && all.iter().all(|r| r.matches(v))
                        })
                        .max();
                    if let Some(agreed) = agreed {
                        return Ok(Round::Restart(bucket, agreed));
                    }
                    graph.node_error(
                        actives[id].node,
                        format!(
                            "failed to select a version for `{crate_name}`: `{} v{}` requires `{}`, but `{crate_name} v{}` is selected and only one version per compatible range is allowed",
                            actives[id].name, actives[id].version, dep.req, actives[existing].version
                        ),
                    );
                    continue;
                }
                existing
            } else {
                if actives.len() >= MAX_NODES {
                    return Err(format!("more than {MAX_NODES} crates"));
                }
                let node = graph.node(
                    &chosen_candidate.name,
                    &chosen_candidate.version,
                    chosen_candidate.checksum.as_deref(),
                );
                actives.push(Active {
                    name: crate_name.to_owned(),
                    version: chosen.clone(),
                    candidate: chosen_candidate.clone(),
                    features: BTreeSet::new(),
                    node,
                });
                by_bucket.insert(bucket, actives.len() - 1);
                created = true;
                actives.len() - 1
            };
            graph.edge(actives[id].node, actives[to].node, &dep.req, dep.kind());
            // The features this edge asks of the dependency.
            let mut asked: BTreeSet<String> = dep.features.iter().cloned().collect();
            if dep.default_features {
                asked.insert("default".to_owned());
            }
            asked.extend(dep_features.get(&dep.name).into_iter().flatten().cloned());
            if created || asked.iter().any(|f| !actives[to].features.contains(f)) {
                queue.push_back((to, asked));
            }
        }
    }
    Ok(Round::Done(graph))
}

/// Adds `requested` features (and the features they enable, transitively) to
/// `active`.
fn enable(active: &mut Active, requested: BTreeSet<String>) {
    let mut stack: Vec<String> = requested.into_iter().collect();
    while let Some(feature) = stack.pop() {
        // `default` is implicit when a crate declares none.
        if active.features.contains(&feature) {
            continue;
        }
        active.features.insert(feature.clone());
        for value in active
            .candidate
            .features
            .get(&feature)
            .into_iter()
            .chain(active.candidate.features2.get(&feature))
            .flatten()
        {
            if !value.contains('/') && !value.starts_with("dep:") {
                stack.push(value.clone());
            }
        }
    }
}

/// From the enabled features: the optional dependencies switched on (by
/// `dep:name`, an implicit `name` feature, or `name/feature`), and the features asked
/// of each dependency (`name/feature`, `name?/feature`).
fn switched_on(active: &Active) -> (BTreeSet<String>, BTreeMap<String, BTreeSet<String>>) {
    let mut deps = BTreeSet::new();
    let mut features: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let optional: BTreeSet<&str> = active
        .candidate
        .deps
        .iter()
        .filter(|d| d.optional)
        .map(|d| d.name.as_str())
        .collect();
    let declared = |name: &str| {
        active.candidate.features.contains_key(name)
            || active.candidate.features2.contains_key(name)
    };
    for feature in &active.features {
        // An optional dependency is a feature of its own name unless `dep:` hides it.
        if optional.contains(feature.as_str()) && !declared(feature) {
            deps.insert(feature.clone());
        }
        for value in active
            .candidate
            .features
            .get(feature)
            .into_iter()
            .chain(active.candidate.features2.get(feature))
            .flatten()
        {
            if let Some(dep) = value.strip_prefix("dep:") {
                deps.insert(dep.to_owned());
            } else if let Some((dep, dep_feature)) = value.split_once('/') {
                if let Some(weak) = dep.strip_suffix('?') {
                    features
                        .entry(weak.to_owned())
                        .or_default()
                        .insert(dep_feature.to_owned());
                } else {
                    deps.insert(dep.to_owned());
                    features
                        .entry(dep.to_owned())
                        .or_default()
                        .insert(dep_feature.to_owned());
                }
            } else if optional.contains(value.as_str()) && !declared(value) {
                deps.insert(value.clone());
            }
        }
    }
    (deps, features)
}
