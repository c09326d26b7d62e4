//! Resolving a package version's dependency tree from packuments, as npm builds its
//! ideal tree for a project that depends on that version alone:
//! - breadth first, shallowest and then alphabetical by location first, each
//!   package's dependencies by name;
//! - a dependency is satisfied by the nearest copy visible from the dependent (its
//!   own `node_modules`, then each ancestor's) when that copy's version satisfies the
//!   range; otherwise a version is picked (npm-pick-manifest: a dist-tag by name; the
//!   `latest` tag when it satisfies and is not deprecated; else the highest
//!   satisfying, non-deprecated first, pre-releases only when the range names one)
//!   and placed as shallow as it can go below the copy that conflicts (hoisting);
//! - optional dependencies are installed (for every platform, as `package-lock.json`
//!   records them, unless a target `os-cpu` is asked); required peer dependencies are
//!   installed beside the dependent; optional peers only with `include_optional`.
//!
//! The answer is the set of name@version with their edges; where two copies of one
//! version sit at different places, they are one node.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use nodejs_semver::{Range, Version};
use serde_json::Value;

use crate::protocols::resolution::{Graph, GraphBuilder, ResolveOptions, MAX_NODES};

/// The target when none is asked: every platform (as `package-lock.json` records).
pub const ALL_PLATFORMS: &str = "all";

/// What a resolver needs of the registry: a package's packument, fetched once.
pub trait Packuments {
    /// # Errors
    /// Why the packument is not available (not found, upstream down).
    fn packument(
        &mut self,
        name: &str,
    ) -> impl std::future::Future<Output = Result<Arc<Value>, String>> + Send;
}

/// `os` and `cpu` of the asked target (`linux-x64`, `darwin-arm64`, `win32-x64`).
struct Platform {
    os: String,
    cpu: String,
}

/// # Errors
/// A target that is not `all` or `OS-CPU`.
fn platform(target: Option<&str>) -> Result<Option<Platform>, String> {
    match target {
        None | Some(ALL_PLATFORMS) => Ok(None),
        Some(target) => match target.split_once('-') {
            Some((os, cpu)) if !os.is_empty() && !cpu.is_empty() => Ok(Some(Platform {
                os: os.to_owned(),
                cpu: cpu.to_owned(),
            })),
            _ => Err(format!(
                "`target={target}`: npm targets are `OS-CPU` as Node names them (`linux-x64`, `darwin-arm64`, `win32-x64`) or `{ALL_PLATFORMS}`"
            )),
        },
    }
}

/// Checks the target before anything is fetched.
///
/// # Errors
/// As [`platform`].
pub fn check_target(target: Option<&str>) -> Result<(), String> {
    platform(target).map(|_| ())
}

/// npm's `os`/`cpu` lists: allowed names, or `!name` exclusions.
fn allows(list: Option<&Value>, wanted: &str) -> bool {
    let Some(list) = list.and_then(Value::as_array) else {
        return true;
    };
    let names: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
    if names.iter().any(|n| n.strip_prefix('!') == Some(wanted)) {
        return false;
    }
    let allowed: Vec<&&str> = names.iter().filter(|n| !n.starts_with('!')).collect();
    allowed.is_empty() || allowed.iter().any(|n| **n == wanted)
}

/// The version `spec` picks from `packument` (npm-pick-manifest).
fn pick(packument: &Value, spec: &str) -> Result<String, String> {
    let tags = packument.get("dist-tags").and_then(Value::as_object);
    let versions = packument
        .get("versions")
        .and_then(Value::as_object)
        .ok_or_else(|| "the packument has no versions".to_owned())?;
    let spec = spec.trim();
    let Ok(range) = Range::parse(if spec.is_empty() { "*" } else { spec }) else {
        // Not a range: a dist-tag.
        return tags
            .and_then(|t| t.get(spec))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("no dist-tag or version matches `{spec}`"));
    };
    let deprecated = |version: &str| {
        versions
            .get(version)
            .and_then(|v| v.get("deprecated"))
            .is_some_and(|d| d.as_str().is_none_or(|text| !text.is_empty()))
    };
    if let Some(latest) = tags.and_then(|t| t.get("latest")).and_then(Value::as_str) {
        if Version::parse(latest).is_ok_and(|v| v.satisfies(&range)) && !deprecated(latest) {
            return Ok(latest.to_owned());
        }
    }
    let mut satisfying: Vec<(bool, Version, &String)> = versions
        .keys()
        .filter_map(|text| Some((Version::parse(text).ok()?, text)))
        .filter(|(v, _)| v.satisfies(&range))
        .map(|(v, text)| (!deprecated(text), v, text))
        .collect();
    satisfying.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    satisfying
        .last()
        .map(|(_, _, text)| (*text).clone())
        .ok_or_else(|| format!("no version matches `{spec}`"))
}

/// A package placed in the simulated `node_modules` tree.
struct Placed {
    name: String,
    version: String,
    /// Folder names from the project root, e.g. `["a", "b"]` for
    /// `node_modules/a/node_modules/b`.
    location: Vec<String>,
    node: usize,
}

/// One dependency edge as npm sees it.
struct Want {
    name: String,
    spec: String,
    kind: &'static str,
}

fn wants(document: &Value, include_optional: bool) -> Vec<Want> {
    let mut wants = Vec::new();
    let mut add = |field: &str, kind: &'static str| {
        for (name, spec) in document
            .get(field)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if wants.iter().any(|w: &Want| &w.name == name) {
                continue; // `dependencies` wins over a repeat in another field
            }
            wants.push(Want {
                name: name.clone(),
                spec: spec.as_str().unwrap_or("*").to_owned(),
                kind,
            });
        }
    };
    add("dependencies", "runtime");
    add("optionalDependencies", "optional");
    let optional_peer = |name: &str| {
        document
            .get("peerDependenciesMeta")
            .and_then(|m| m.get(name))
            .and_then(|m| m.get("optional"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    for (name, spec) in document
        .get("peerDependencies")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if wants.iter().any(|w| &w.name == name) || (optional_peer(name) && !include_optional) {
            continue;
        }
        wants.push(Want {
            name: name.clone(),
            spec: spec.as_str().unwrap_or("*").to_owned(),
            kind: "peer",
        });
    }
    wants.sort_by(|a, b| a.name.cmp(&b.name));
    wants
}

/// The simulated `node_modules` tree while it is built.
struct Tree {
    placed: Vec<Placed>,
    documents: Vec<Value>,
    done: Vec<bool>,
    /// Folder → the packages in its `node_modules`.
    folders: HashMap<Vec<String>, BTreeMap<String, usize>>,
    graph: GraphBuilder,
}

fn digest(document: &Value) -> Option<String> {
    document
        .get("dist")
        .and_then(|d| d.get("integrity").or_else(|| d.get("shasum")))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

impl Tree {
    /// The nearest copy of `name` visible from `folder`: its depth and index.
    fn visible(&self, folder: &[String], name: &str) -> Option<(usize, usize)> {
        (0..=folder.len()).rev().find_map(|depth| {
            self.folders
                .get(&folder[..depth])
                .and_then(|f| f.get(name))
                .map(|&i| (depth, i))
        })
    }

    fn place(
        &mut self,
        name: &str,
        version: String,
        document: Value,
        folder: Vec<String>,
    ) -> usize {
        let node = self
            .graph
            .node(name, &version, digest(&document).as_deref());
        let mut location = folder.clone();
        location.push(name.to_owned());
        self.placed.push(Placed {
            name: name.to_owned(),
            version,
            location,
            node,
        });
        self.documents.push(document);
        self.done.push(false);
        let index = self.placed.len() - 1;
        self.folders
            .entry(folder)
            .or_default()
            .insert(name.to_owned(), index);
        index
    }
}

/// Resolves `name` `version` as the only dependency of a project.
///
/// # Errors
/// The root itself cannot be found, or the target is malformed.
pub async fn resolve(
    registry: &mut impl Packuments,
    name: &str,
    version: &str,
    options: &ResolveOptions,
) -> Result<Graph, String> {
    let root_packument = registry.packument(name).await?;
    let root_document = root_packument
        .get("versions")
        .and_then(|v| v.get(version))
        .cloned()
        .ok_or_else(|| format!("package `{name}` has no version {version}"))?;
    resolve_root(registry, name, version, root_document, options).await
}

/// Resolves a project's own `package.json` as `npm install` would: its
/// `dependencies`, `devDependencies` (a project installs its own) and optional ones.
///
/// # Errors
/// The file is not a JSON object, or the target is malformed.
pub async fn resolve_package_json(
    registry: &mut impl Packuments,
    package_json: &str,
    options: &ResolveOptions,
) -> Result<Graph, String> {
    let mut document: Value = serde_json::from_str(package_json)
        .map_err(|e| format!("the body is not a package.json: {e}"))?;
    let Some(object) = document.as_object_mut() else {
        return Err("the body is not a package.json: not a JSON object".to_owned());
    };
    if let Some(Value::Object(dev)) = object.remove("devDependencies") {
        let dependencies = object
            .entry("dependencies")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Value::Object(dependencies) = dependencies {
            for (name, spec) in dev {
                dependencies.entry(name).or_insert(spec);
            }
        }
    }
    let name = object
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("package.json")
        .to_owned();
    let version = object
        .get("version")
        .and_then(Value::as_str)
        .unwrap_or("0.0.0")
        .to_owned();
    resolve_root(registry, &name, &version, document, options).await
}

/// Resolves from a root version document (a registry's, or a project's own).
async fn resolve_root(
    registry: &mut impl Packuments,
    name: &str,
    version: &str,
    root_document: Value,
    options: &ResolveOptions,
) -> Result<Graph, String> {
    let platform = platform(options.target.as_deref())?;
    let target_name = options
        .target
        .clone()
        .unwrap_or_else(|| ALL_PLATFORMS.to_owned());
    let mut tree = Tree {
        placed: Vec::new(),
        documents: Vec::new(),
        done: Vec::new(),
        folders: HashMap::new(),
        graph: GraphBuilder::default(),
    };
    let root = tree.place(name, version.to_owned(), root_document, Vec::new());
    place_peers(registry, &mut tree, root, options).await;
    // The next package to process: shallowest, then by location.
    while let Some(at) = (0..tree.placed.len())
        .filter(|&i| !tree.done[i])
        .min_by(|&a, &b| {
            let (a, b) = (&tree.placed[a].location, &tree.placed[b].location);
            (a.len(), a).cmp(&(b.len(), b))
        })
    {
        tree.done[at] = true;
        for want in wants(&tree.documents[at], options.include_optional) {
            let from = tree.placed[at].node;
            let location = tree.placed[at].location.clone();
            // Peers were placed beside the dependent: they resolve from its folder.
            let here: &[String] = if want.kind == "peer" {
                &location[..location.len() - 1]
            } else {
                &location
            };
            let visible = tree.visible(here, &want.name);
            let packument = match registry.packument(&want.name).await {
                Ok(packument) => packument,
                Err(reason) => {
                    tree.graph
                        .node_error(from, format!("{}@{}: {reason}", want.name, want.spec));
                    continue;
                }
            };
            if let Some((_, existing)) = visible {
                if satisfies(&packument, &want.spec, &tree.placed[existing].version) {
                    let to = tree.placed[existing].node;
                    tree.graph.edge(from, to, &want.spec, want.kind);
                    continue;
                }
            }
            let (chosen, document) = match chosen(&packument, &want, &tree.placed[at]) {
                Ok(found) => found,
                Err(reason) => {
                    tree.graph.node_error(from, reason);
                    continue;
                }
            };
            if want.kind == "optional" {
                if let Some(platform) = &platform {
                    if !allows(document.get("os"), &platform.os)
                        || !allows(document.get("cpu"), &platform.cpu)
                    {
                        continue; // npm skips an optional dependency that cannot run here
                    }
                }
            }
            // As shallow as possible, below the nearest conflicting copy.
            let folder: Vec<String> = match visible {
                None => Vec::new(),
                Some((depth, _)) if depth < here.len() => here[..=depth].to_vec(),
                Some(_) => {
                    tree.graph.node_error(
                        from,
                        format!(
                            "{}@{} conflicts with the copy beside it",
                            want.name, want.spec
                        ),
                    );
                    continue;
                }
            };
            if tree.placed.len() >= MAX_NODES {
                return Err(format!("more than {MAX_NODES} packages"));
            }
            let placed = tree.place(&want.name, chosen, document, folder);
            let to = tree.placed[placed].node;
            tree.graph.edge(from, to, &want.spec, want.kind);
            place_peers(registry, &mut tree, placed, options).await;
        }
    }
    Ok(tree.graph.finish("npm", target_name, options.max_depth))
}

/// Whether `version` is what `spec` (a range, or a dist-tag) asks for.
fn satisfies(packument: &Value, spec: &str, version: &str) -> bool {
    Range::parse(spec).map_or_else(
        |_| pick(packument, spec).ok().as_deref() == Some(version),
        |range| Version::parse(version).is_ok_and(|v| v.satisfies(&range)),
    )
}

/// The version `want` picks and its document, or the error npm would give.
fn chosen(packument: &Value, want: &Want, dependent: &Placed) -> Result<(String, Value), String> {
    let version = pick(packument, &want.spec).map_err(|reason| {
        format!(
            "No matching version found for {}@{} (required by {}@{}): {reason}",
            want.name, want.spec, dependent.name, dependent.version
        )
    })?;
    let document = packument
        .get("versions")
        .and_then(|v| v.get(&version))
        .cloned()
        .ok_or_else(|| format!("{}@{version} is not in its packument", want.name))?;
    Ok((version, document))
}

/// Places the peer dependencies of a newly placed package beside it, at once (npm
/// places a package and its peers as one set), and theirs in turn.
async fn place_peers(
    registry: &mut impl Packuments,
    tree: &mut Tree,
    placed: usize,
    options: &ResolveOptions,
) {
    let mut pending = vec![placed];
    while let Some(at) = pending.pop() {
        let location = tree.placed[at].location.clone();
        let folder = &location[..location.len() - 1];
        for want in wants(&tree.documents[at], options.include_optional) {
            if want.kind != "peer" {
                continue;
            }
            let from = tree.placed[at].node;
            let Ok(packument) = registry.packument(&want.name).await else {
                continue; // reported when the package is processed
            };
            match tree.visible(folder, &want.name) {
                Some((_, existing))
                    if satisfies(&packument, &want.spec, &tree.placed[existing].version) =>
                {
                    let to = tree.placed[existing].node;
                    tree.graph.edge(from, to, &want.spec, want.kind);
                }
                Some((depth, _)) if depth == folder.len() => {} // a conflict: reported later
                _ => {
                    if tree.placed.len() >= MAX_NODES {
                        return;
                    }
                    if let Ok((version, document)) = chosen(&packument, &want, &tree.placed[at]) {
                        let peer = tree.place(&want.name, version, document, folder.to_vec());
                        let to = tree.placed[peer].node;
                        tree.graph.edge(from, to, &want.spec, want.kind);
                        pending.push(peer);
                    }
                }
            }
        }
    }
}

/// The registry as the engine serves it, each packument read once per resolution.
pub struct EnginePackuments<'a> {
    repo: &'a super::NpmRepo,
    engine: &'a crate::engine::CacheEngine,
    read: HashMap<String, Arc<Value>>,
    /// Every packument read, for [`crate::protocols::resolution::Graph::documents`].
    pub documents: BTreeMap<String, Option<String>>,
}

impl<'a> EnginePackuments<'a> {
    #[must_use]
    pub fn new(repo: &'a super::NpmRepo, engine: &'a crate::engine::CacheEngine) -> Self {
        Self {
            repo,
            engine,
            read: HashMap::new(),
            documents: BTreeMap::new(),
        }
    }
}

impl Packuments for EnginePackuments<'_> {
    async fn packument(&mut self, name: &str) -> Result<Arc<Value>, String> {
        if let Some(read) = self.read.get(name) {
            return Ok(Arc::clone(read));
        }
        if !super::keys::is_valid_package_name(name) {
            return Err(format!("`{name}` is not an npm package name"));
        }
        let lookup = self
            .repo
            .lookup(self.engine, name)
            .await
            .map_err(|error| error.to_string())?;
        self.documents.insert(
            name.to_owned(),
            crate::protocols::resolution::fingerprint(&lookup.document),
        );
        let packument = super::found_packument(&lookup, name).map_err(|error| error.to_string())?;
        self.read.insert(name.to_owned(), Arc::clone(&packument));
        Ok(packument)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{allows, pick};

    #[test]
    fn picks_like_npm_pick_manifest() {
        let packument = json!({
            "dist-tags": {"latest": "1.1.0", "next": "2.0.0-rc.1"},
            "versions": {"1.0.0": {}, "1.1.0": {}, "1.2.0": {}, "1.3.0": {"deprecated": "broken"},
                         "2.0.0-rc.1": {}}
        });
        assert_eq!(
            pick(&packument, "^1.0.0").as_deref(),
            Ok("1.1.0"),
            "latest first"
        );
        assert_eq!(pick(&packument, "~1.2.0").as_deref(), Ok("1.2.0"));
        assert_eq!(
            pick(&packument, ">=1.2.0").as_deref(),
            Ok("1.2.0"),
            "not deprecated, no pre-release"
        );
        assert_eq!(
            pick(&packument, "1.3.0").as_deref(),
            Ok("1.3.0"),
            "deprecated when it is all there is"
        );
        assert_eq!(pick(&packument, "next").as_deref(), Ok("2.0.0-rc.1"));
        assert_eq!(pick(&packument, "^2.0.0-rc.0").as_deref(), Ok("2.0.0-rc.1"));
        assert!(pick(&packument, "^3").is_err());
        assert!(pick(&packument, "nightly").is_err());
    }

    #[test]
    fn os_and_cpu_lists() {
        assert!(allows(None, "linux"));
        assert!(allows(Some(&json!(["linux", "darwin"])), "linux"));
        assert!(!allows(Some(&json!(["darwin"])), "linux"));
        assert!(!allows(Some(&json!(["!linux"])), "linux"));
        assert!(allows(Some(&json!(["!win32"])), "linux"));
    }
}
