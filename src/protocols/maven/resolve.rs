//! Resolving dependencies as Maven 3 does, for an artifact a consumer depends on or
//! for a project's own `pom.xml`:
//! - every POM made effective (parents, properties, its own `dependencyManagement`
//!   and imported BOMs);
//! - breadth-first, nearest wins: the first declaration met at the shallowest depth
//!   decides a `group:artifact`'s version, and only the winner's dependencies are
//!   followed;
//! - a project's `dependencyManagement` overrides the version and scope of every
//!   transitive dependency (Maven's classic dependency manager; an artifact
//!   resolved as a consumer's dependency has no such root);
//! - transitively, `test` and `provided` dependencies and optional ones are left
//!   out (optional ones are kept with `include_optional=true`); exclusions hold for
//!   the whole subtree below the declaration that names them;
//! - scopes derive along the path (a `runtime` dependency's `compile` dependency is
//!   `runtime`), shown as each edge's kind;
//! - version ranges take the highest version `maven-metadata.xml` lists inside them;
//! - the POMs of versions that lose a conflict, and of their own dependencies, are
//!   read too, as Maven reads them before it chooses (so warming from a resolution
//!   fills everything `mvn` will ask for); they are not part of the answer.
//!
//! Profiles are not activated (no JDK or OS to activate them for) and `system`
//! dependencies, which no repository serves, are left out.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;

use super::dependencies::{Declared, EffectivePom};
use super::pom::Pom;
use super::source::DocumentCheck;
use super::version_range::Requirement;
use super::xml_texts::XmlTexts;
use super::{layout, MavenRepo};
use crate::engine::CacheEngine;
use crate::protocols::resolution::{
    fingerprint, Graph, GraphBuilder, Progress, ResolveOptions, MAX_NODES, UNREADABLE,
};
use crate::protocols::RequestError;
use crate::storage::BlobStore;

/// The only target: Maven's resolution depends on no platform here.
pub const DEFAULT_TARGET: &str = "default";
/// POMs fetched at once while a level of the tree is read.
const PARALLEL_POMS: usize = 16;

/// Maven's conflict key: a `group:artifact` of one type and classifier.
type ConflictKey = (String, String, String, Option<String>);

/// A node whose dependencies are still to be read.
struct Pending {
    /// Its node; `None` in the subtree of a version that lost a conflict, which is
    /// read (as Maven reads it before choosing, so a warm fills it) but not kept.
    id: Option<usize>,
    coordinates: (String, String, String),
    /// The scope it has on its path (`None`: the root).
    scope: Option<String>,
    /// Exclusions of every declaration on its path, its own included.
    exclusions: Vec<String>,
    depth: usize,
}

/// One resolution's reads, each made once.
pub(super) struct Resolver<'a> {
    repo: &'a MavenRepo,
    engine: &'a CacheEngine,
    blobs: &'a Arc<dyn BlobStore>,
    poms: HashMap<(String, String, String), Result<Arc<EffectivePom>, String>>,
    versions: HashMap<String, Result<Arc<Vec<String>>, String>>,
    /// Every `maven-metadata.xml` read (for a range), by `group:artifact`.
    pub documents: BTreeMap<String, Option<String>>,
    /// Where each level of the tree goes once it is final.
    progress: Progress,
}

/// The scope of a dependency declared `child` below one of scope `parent`.
fn derived_scope(parent: Option<&str>, child: &str) -> String {
    match (parent, child) {
        (_, "system" | "test") | (None | Some("compile"), _) => child,
        (Some(parent @ ("test" | "runtime")), _) => parent,
        (Some("system" | "provided"), _) => "provided",
        _ => "runtime",
    }
    .to_owned()
}

/// Whether `group:artifact` matches an exclusion pattern (`*` for any part).
fn excluded(exclusions: &[String], group: &str, artifact: &str) -> bool {
    exclusions.iter().any(|pattern| {
        let (g, a) = pattern.split_once(':').unwrap_or((pattern, "*"));
        (g == "*" || g == group) && (a == "*" || a == artifact)
    })
}

/// A node's name: `group:artifact`, with `:classifier` when it has one.
fn node_name(declared: &Declared) -> String {
    match &declared.classifier {
        Some(classifier) => format!("{}:{}:{classifier}", declared.group, declared.artifact),
        None => format!("{}:{}", declared.group, declared.artifact),
    }
}

impl<'a> Resolver<'a> {
    pub(super) fn new(
        repo: &'a MavenRepo,
        engine: &'a CacheEngine,
        blobs: &'a Arc<dyn BlobStore>,
        progress: Progress,
    ) -> Self {
        Self {
            repo,
            engine,
            blobs,
            poms: HashMap::new(),
            versions: HashMap::new(),
            documents: BTreeMap::new(),
            progress,
        }
    }

    /// The target asked for: Maven has one.
    ///
    /// # Errors
    /// Any other.
    pub(super) fn check_target(target: Option<&str>) -> Result<(), RequestError> {
        match target {
            None | Some(DEFAULT_TARGET) => Ok(()),
            Some(other) => Err(RequestError::BadRequest(format!(
                "`target={other}`: Maven resolution has one target, `{DEFAULT_TARGET}`"
            ))),
        }
    }

    /// The dependencies of `group:artifact` `version` as a consumer gets them.
    ///
    /// # Errors
    /// Bad coordinates, or a POM the upstream does not have.
    pub(super) async fn artifact(
        &mut self,
        coordinates: &str,
        version: &str,
        options: &ResolveOptions,
    ) -> Result<Graph, RequestError> {
        let (group, artifact) = coordinates.split_once(':').ok_or_else(|| {
            RequestError::BadRequest(format!("`{coordinates}`: expected `groupId:artifactId`"))
        })?;
        layout::metadata_path_of(coordinates).map_err(RequestError::BadRequest)?;
        if version.is_empty() || version.contains(['/', '\\', '[', '(']) {
            return Err(RequestError::BadRequest(format!(
                "`{version}`: expected one version"
            )));
        }
        let pom = self
            .repo
            .pom(self.engine, self.blobs, group, artifact, version)
            .await?;
        let root = self.repo.effective(self.engine, self.blobs, pom, 0).await;
        Ok(self.walk(root, false, options).await)
    }

    /// The dependencies of a project's `pom.xml`, every scope of its own
    /// declarations included (as `mvn dependency:tree` shows them).
    ///
    /// # Errors
    /// A file that is not a POM.
    pub(super) async fn project(
        &mut self,
        pom_xml: &str,
        options: &ResolveOptions,
    ) -> Result<Graph, RequestError> {
        let pom = Pom::parse(pom_xml.as_bytes())
            .map_err(|e| RequestError::BadRequest(format!("not a pom.xml: {e}")))?;
        if pom.artifact.is_none() {
            return Err(RequestError::BadRequest(
                "not a pom.xml: it has no <artifactId>".to_owned(),
            ));
        }
        let root = self.repo.effective(self.engine, self.blobs, pom, 0).await;
        Ok(self.walk(root, true, options).await)
    }

    /// Breadth-first from `root`, a level at a time (each level's POMs fetched at
    /// once); `project`: the root's own test, provided and optional declarations
    /// count.
    async fn walk(&mut self, root: EffectivePom, project: bool, options: &ResolveOptions) -> Graph {
        let root = Arc::new(root);
        let coordinates = (
            root.group.clone(),
            root.artifact.clone(),
            root.version.clone(),
        );
        self.poms.insert(coordinates.clone(), Ok(Arc::clone(&root)));
        let mut graph = GraphBuilder::streaming(self.progress.clone(), options.max_depth);
        let root_id = graph.node(
            &format!("{}:{}", root.group, root.artifact),
            &root.version,
            None,
        );
        for problem in &root.problems {
            graph.node_error(root_id, problem.clone());
        }
        let mut winners: HashMap<ConflictKey, usize> = HashMap::new();
        let mut queued: HashSet<(String, String, String)> = HashSet::new();
        queued.insert(coordinates.clone());
        let mut level = vec![Pending {
            id: Some(root_id),
            coordinates,
            scope: None,
            exclusions: Vec::new(),
            depth: 0,
        }];
        while !level.is_empty() {
            let poms_of_level = self.poms_of(&level).await;
            let mut next = Vec::new();
            for (pending, pom) in level.iter().zip(&poms_of_level) {
                let pom = match (pom, pending.id) {
                    (Ok(pom), _) => pom,
                    (Err(reason), id) => {
                        let (g, a, v) = &pending.coordinates;
                        if let Some(id) = id {
                            graph.node_error(
                                id,
                                format!("failed to read the POM of {g}:{a}:{v}: {reason}"),
                            );
                        }
                        // It may be readable next time: this answer never holds.
                        self.documents
                            .insert(format!("{g}:{a}"), Some(UNREADABLE.to_owned()));
                        continue;
                    }
                };
                if !pom.problems.is_empty() {
                    // A parent or BOM that could not be read may be readable next
                    // time: this answer never holds.
                    let (g, a, _) = &pending.coordinates;
                    self.documents
                        .insert(format!("{g}:{a}"), Some(UNREADABLE.to_owned()));
                }
                let (declarations, problems) = pom.declared();
                if let Some(id) = pending.id.filter(|_| pending.depth > 0) {
                    for problem in pom.problems.iter().chain(&problems) {
                        graph.node_error(id, problem.clone());
                    }
                }
                if options.max_depth.is_some_and(|max| pending.depth >= max) {
                    continue;
                }
                let transitive = pending.depth > 0 || !project;
                for mut declared in declarations {
                    if declared.scope == "system"
                        || (transitive && matches!(declared.scope.as_str(), "test" | "provided"))
                        || (transitive && declared.optional && !options.include_optional)
                        || excluded(&pending.exclusions, &declared.group, &declared.artifact)
                    {
                        continue;
                    }
                    // Maven's classic manager: a project's management rules every
                    // transitive dependency; an artifact's own rules only its
                    // declarations (already applied by `declared`).
                    if project && pending.depth > 0 {
                        if let Some(managed) = root.managed_for(
                            &declared.group,
                            &declared.artifact,
                            &declared.kind,
                            declared.classifier.as_deref(),
                        ) {
                            if let Some(version) = &managed.version {
                                declared.version.clone_from(version);
                            }
                            if let Some(scope) = &managed.scope {
                                declared.scope.clone_from(scope);
                            }
                            declared
                                .exclusions
                                .extend(managed.exclusions.iter().cloned());
                        }
                    }
                    let scope = derived_scope(pending.scope.as_deref(), &declared.scope);
                    let key: ConflictKey = (
                        declared.group.clone(),
                        declared.artifact.clone(),
                        declared.kind.clone(),
                        declared.classifier.clone(),
                    );
                    let winner = winners.get(&key).copied();
                    if let (Some(winner), Some(from)) = (winner, pending.id) {
                        graph.edge(from, winner, &declared.version, &scope);
                    }
                    if graph.len() >= MAX_NODES || queued.len() >= 2 * MAX_NODES {
                        graph.error(format!(
                            "more than {MAX_NODES} dependencies: the rest are left out"
                        ));
                        break;
                    }
                    let version = match self.version_for(&declared).await {
                        Ok(version) => version,
                        Err(reason) => {
                            if let Some(id) = pending.id.filter(|_| winner.is_none()) {
                                graph.node_error(id, reason);
                            }
                            continue;
                        }
                    };
                    // A new winner only below winners; anything else is read only.
                    let id = match (winner, pending.id) {
                        (None, Some(from)) => {
                            let id = graph.node(&node_name(&declared), &version, None);
                            winners.insert(key, id);
                            graph.edge(from, id, &declared.version, &scope);
                            Some(id)
                        }
                        _ => None,
                    };
                    let coordinates = (declared.group.clone(), declared.artifact.clone(), version);
                    // A read-only visit once per version; a new winner always.
                    if !queued.insert(coordinates.clone()) && id.is_none() {
                        continue;
                    }
                    let mut exclusions = pending.exclusions.clone();
                    exclusions.extend(declared.exclusions.iter().cloned());
                    next.push(Pending {
                        id,
                        coordinates,
                        scope: Some(scope),
                        exclusions,
                        depth: pending.depth + 1,
                    });
                }
            }
            // Every node of this level is read: the levels up to it are final.
            for id in level.iter().filter_map(|pending| pending.id) {
                graph.settled(id);
            }
            graph.flush();
            // A level read from memory never waits: let the callers following the
            // lines (and every other task of this worker) run before the next one.
            tokio::task::yield_now().await;
            level = next;
        }
        let mut graph = graph.finish(layout::FORMAT, DEFAULT_TARGET.to_owned(), options.max_depth);
        graph.documents = std::mem::take(&mut self.documents);
        graph
    }

    /// The effective POMs of a level, fetched at once (each at most once).
    async fn poms_of(&mut self, level: &[Pending]) -> Vec<Result<Arc<EffectivePom>, String>> {
        let missing: Vec<(String, String, String)> = level
            .iter()
            .map(|p| p.coordinates.clone())
            .filter(|c| !self.poms.contains_key(c))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let (repo, engine, blobs) = (self.repo, self.engine, self.blobs);
        let fetched: Vec<_> = futures::stream::iter(missing)
            .map(|(group, artifact, version)| async move {
                let effective = match repo.pom(engine, blobs, &group, &artifact, &version).await {
                    Ok(pom) => Ok(Arc::new(repo.effective(engine, blobs, pom, 0).await)),
                    Err(error) => Err(error.to_string()),
                };
                ((group, artifact, version), effective)
            })
            .buffered(PARALLEL_POMS)
            .collect()
            .await;
        self.poms.extend(fetched);
        level
            .iter()
            .map(|p| self.poms[&p.coordinates].clone())
            .collect()
    }

    /// The version a declaration resolves to: its own, or the highest inside its
    /// range that the metadata lists.
    async fn version_for(&mut self, declared: &Declared) -> Result<String, String> {
        let requirement = Requirement::parse(&declared.version)?;
        if let Requirement::Soft(version) = &requirement {
            return Ok(version.clone());
        }
        let coordinates = format!("{}:{}", declared.group, declared.artifact);
        let versions = self.versions_of(&coordinates).await?;
        requirement
            .pick(&versions)
            .map(str::to_owned)
            .ok_or_else(|| {
                format!(
                    "no version of {coordinates} inside `{}` (the metadata lists {})",
                    declared.version,
                    versions.join(", ")
                )
            })
    }

    /// The versions `maven-metadata.xml` lists for `group:artifact`.
    async fn versions_of(&mut self, coordinates: &str) -> Result<Arc<Vec<String>>, String> {
        if let Some(known) = self.versions.get(coordinates) {
            return known.clone();
        }
        let read = async {
            let path = layout::metadata_path_of(coordinates)?;
            let lookup = self
                .repo
                .lookup_document(self.engine, &path, DocumentCheck::MetadataXml)
                .await
                .map_err(|e| format!("`{path}`: {e}"))?;
            self.documents
                .insert(coordinates.to_owned(), fingerprint(&lookup.document));
            if !lookup.document.found {
                return Err(format!("`{path}` does not exist upstream"));
            }
            let metadata = XmlTexts::parse(&lookup.document.canonical)
                .map_err(|e| format!("`{path}`: {e}"))?;
            Ok(Arc::new(
                metadata
                    .all("metadata/versioning/versions/version")
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
            ))
        };
        let versions = read.await;
        self.versions
            .insert(coordinates.to_owned(), versions.clone());
        versions
    }
}
