//! Resolving a PyPI distribution's dependency tree as an installer does for one
//! environment: `PubGrub` (the `pubgrub` crate, the algorithm uv uses) over PEP 440
//! versions, with PEP 508 markers evaluated for the target, extras as their own
//! packages (`name[extra]` at a version depends on `name` at that same version),
//! yanked files skipped unless pinned with `==`, pre-releases only when a requirement
//! names one or nothing else matches, `Requires-Python` and wheel tags checked against
//! the target. Dependencies come from core metadata read through the cache: the PEP
//! 658 file, else the wheel's `METADATA`, else an sdist's `PKG-INFO` where PEP 643
//! makes it binding. Nothing is ever built: a version whose dependencies cannot be
//! known without building is kept with its dependencies unknown, said on its node.
//!
//! `PubGrub` asks for versions and dependencies synchronously; it runs on a blocking
//! thread and each answer is fetched through the engine (cache first, single flight)
//! from there.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::{
    ExtraName, MarkerEnvironment, MarkerEnvironmentBuilder, Requirement, VersionOrUrl,
};
use pubgrub::{Dependencies, DependencyProvider, PackageResolutionStatistics, Ranges};

use super::badges::version_of;
use super::core_metadata::{self, CoreMetadataFields};
use super::dependencies::{from_core_metadata, parse_requirement};
use super::model::{CoreMetadata, DistFile, ProjectPage, Yanked};
use super::{normalize, PypiRepo, METADATA_SUFFIX};
use crate::engine::CacheEngine;
use crate::protocols::dependencies::ExtractionStatus;
use crate::protocols::resolution::{fingerprint, Graph, GraphBuilder, ResolveOptions, MAX_NODES};
use crate::protocols::RequestError;
use crate::storage::BlobStore;

/// The target when none is asked.
pub const DEFAULT_TARGET: &str = "3.12-linux-x86_64";
/// The root node of a requirements file's resolution.
const ROOT_NAME: &str = "requirements.txt";
/// Bound on the versions one resolution reads the dependencies of (a hostile or
/// pathological index cannot keep a blocking thread busy for ever).
const MAX_STEPS: usize = 20_000;
/// Largest core metadata file read.
const MAX_METADATA_FILE: u64 = 16 * 1024 * 1024;
/// Largest distribution opened for its metadata when there is no PEP 658 file.
const MAX_DISTRIBUTION: u64 = 64 * 1024 * 1024;

/// The environment markers are evaluated for, and wheels are chosen for.
#[derive(Debug, Clone)]
pub struct Target {
    /// `3.12` (what `python_version` is).
    python: (u64, u64),
    os: Os,
    machine: String,
    markers: MarkerEnvironment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Os {
    Linux,
    Macos,
    Windows,
}

impl Target {
    /// Reads `<python>[-<os>[-<machine>]]`: `3.11`, `3.12-linux-x86_64`,
    /// `3.10-macos-aarch64`, `3.13-windows-x86_64`.
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn parse(text: Option<&str>) -> Result<Self, String> {
        let text = text.unwrap_or(DEFAULT_TARGET);
        let explain = || {
            format!(
                "`target={text}`: expected `<python>[-<os>[-<machine>]]`, e.g. `{DEFAULT_TARGET}` (os: linux, macos or windows)"
            )
        };
        let mut parts = text.splitn(3, '-');
        let python = parts.next().unwrap_or_default();
        let (major, minor) = python.split_once('.').ok_or_else(explain)?;
        let python: (u64, u64) = (
            major.parse().map_err(|_| explain())?,
            minor.parse().map_err(|_| explain())?,
        );
        if python.0 != 3 {
            return Err(format!("{}: only Python 3 is resolved for", explain()));
        }
        let os = match parts.next().unwrap_or("linux") {
            "linux" => Os::Linux,
            "macos" => Os::Macos,
            "windows" => Os::Windows,
            _ => return Err(explain()),
        };
        let machine = parts.next().unwrap_or("x86_64").to_owned();
        if machine.is_empty()
            || !machine
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(explain());
        }
        let python_version = format!("{}.{}", python.0, python.1);
        let full_version = format!("{python_version}.0");
        let (os_name, sys_platform, platform_system) = match os {
            Os::Linux => ("posix", "linux", "Linux"),
            Os::Macos => ("posix", "darwin", "Darwin"),
            Os::Windows => ("nt", "win32", "Windows"),
        };
        let platform_machine = if os == Os::Windows && machine == "x86_64" {
            "AMD64"
        } else {
            machine.as_str()
        };
        let markers = MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
            implementation_name: "cpython",
            implementation_version: &full_version,
            os_name,
            platform_machine,
            platform_python_implementation: "CPython",
            platform_release: "",
            platform_system,
            platform_version: "",
            python_full_version: &full_version,
            python_version: &python_version,
            sys_platform,
        })
        .map_err(|error| format!("{}: {error}", explain()))?;
        Ok(Self {
            python,
            os,
            machine,
            markers,
        })
    }

    /// The canonical spelling, as the answer states it.
    #[must_use]
    pub fn name(&self) -> String {
        let os = match self.os {
            Os::Linux => "linux",
            Os::Macos => "macos",
            Os::Windows => "windows",
        };
        format!("{}.{}-{os}-{}", self.python.0, self.python.1, self.machine)
    }

    fn python_version(&self) -> Version {
        Version::new([self.python.0, self.python.1, 0])
    }

    /// Whether a wheel's tags (`py3-none-any`, `cp312-abi3-manylinux_2_17_x86_64`, …)
    /// install on this target.
    fn accepts_wheel(&self, filename: &str) -> bool {
        let Some(stem) = filename.strip_suffix(".whl") else {
            return false;
        };
        let parts: Vec<&str> = stem.split('-').collect();
        if parts.len() < 5 {
            return false;
        }
        let (python, abi, platform) = (
            parts[parts.len() - 3],
            parts[parts.len() - 2],
            parts[parts.len() - 1],
        );
        let (major, minor) = self.python;
        let cpython = format!("cp{major}{minor}");
        let python_ok = |tag: &str| {
            tag == "py3"
                || tag == format!("py{major}{minor}")
                || tag == cpython
                || (tag.starts_with("cp3") || tag.starts_with("py3"))
                    && tag[3..].parse::<u64>().is_ok_and(|m| m <= minor)
                    && abi.split('.').any(|a| a == "abi3" || a == "none")
        };
        let abi_ok = |tag: &str| {
            tag == "none" || tag == "abi3" || tag == cpython || tag == format!("{cpython}m")
        };
        python.split('.').any(python_ok)
            && abi.split('.').any(abi_ok)
            && platform.split('.').any(|tag| self.accepts_platform(tag))
    }

    fn accepts_platform(&self, tag: &str) -> bool {
        if tag == "any" {
            return true;
        }
        let machine = self.machine.as_str();
        match self.os {
            Os::Linux => {
                tag == format!("linux_{machine}")
                    || [
                        "manylinux1_",
                        "manylinux2010_",
                        "manylinux2014_",
                        "manylinux_",
                    ]
                    .iter()
                    .any(|prefix| tag.starts_with(prefix))
                        && tag.ends_with(&format!("_{machine}"))
            }
            Os::Macos => {
                tag.starts_with("macosx_")
                    && (tag.ends_with(&format!("_{machine}"))
                        || tag.ends_with("_universal2")
                        || (machine == "x86_64" && tag.ends_with("_intel")))
            }
            Os::Windows => match machine {
                "x86_64" => tag == "win_amd64",
                "aarch64" | "arm64" => tag == "win_arm64",
                "x86" | "i686" => tag == "win32",
                _ => false,
            },
        }
    }
}

/// A package as `PubGrub` sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Package {
    /// A requirements file (what it asks is the provider's `root_requirements`).
    Root,
    Project(String),
    /// `project[extra]`: the project at the same version plus the extra's requirements.
    Extra(String, String),
}

impl Package {
    fn project(&self) -> &str {
        match self {
            Self::Root => ROOT_NAME,
            Self::Project(name) | Self::Extra(name, _) => name,
        }
    }
}

impl fmt::Display for Package {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Root => f.write_str(ROOT_NAME),
            Self::Project(name) => f.write_str(name),
            Self::Extra(name, extra) => write!(f, "{name}[{extra}]"),
        }
    }
}

type Range = Ranges<Version>;

/// The resolver's own failure (not "no solution").
#[derive(Debug)]
struct Failed(String);

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failed {}

/// One version's files that suit the target.
#[derive(Debug, Clone)]
struct Release {
    version: Version,
    /// Every suitable file is yanked.
    yanked: bool,
    /// The file whose metadata is read and whose digest the node carries: a
    /// suitable wheel when there is one, else the sdist.
    file: DistFile,
}

/// What was read of one project.
#[derive(Debug)]
struct Project {
    /// Suitable releases, highest first.
    releases: Vec<Release>,
}

/// One dependency edge as read from metadata.
#[derive(Debug, Clone)]
struct Declared {
    to: Package,
    requirement: String,
    kind: &'static str,
}

/// Reads pages and metadata through the engine for a `PubGrub` run.
struct Provider {
    repo: PypiRepo,
    engine: CacheEngine,
    blobs: Arc<dyn BlobStore>,
    runtime: tokio::runtime::Handle,
    target: Target,
    projects: RefCell<HashMap<String, Arc<Project>>>,
    /// Dependencies handed to `PubGrub`, by package and version, for the graph.
    declared: RefCell<HashMap<(Package, Version), Vec<Declared>>>,
    /// Errors about a package version (dependencies unknown, unreadable lines).
    notes: RefCell<HashMap<(String, Version), Vec<String>>>,
    /// Projects for which a requirement named a pre-release.
    pre_releases: RefCell<std::collections::HashSet<String>>,
    /// Order in which packages were first seen (decided first-seen first).
    seen: RefCell<HashMap<Package, usize>>,
    documents: RefCell<BTreeMap<String, Option<String>>>,
    /// What a requirements file asks (empty when a project version is the root).
    root_requirements: Vec<Requirement<pep508_rs::VerbatimUrl>>,
    /// Versions whose dependencies were asked for so far.
    steps: std::cell::Cell<usize>,
}

impl Provider {
    fn project(&self, name: &str) -> Result<Arc<Project>, Failed> {
        if let Some(project) = self.projects.borrow().get(name) {
            return Ok(Arc::clone(project));
        }
        if self.projects.borrow().len() >= MAX_NODES {
            return Err(Failed(format!(
                "more than {MAX_NODES} projects: the resolution is cut off"
            )));
        }
        let lookup = self
            .runtime
            .block_on(self.repo.lookup_project(&self.engine, name))
            .map_err(|error| Failed(format!("`{name}`: {error}")))?;
        self.documents
            .borrow_mut()
            .insert(name.to_owned(), fingerprint(&lookup.document));
        let project = if lookup.document.found {
            let page = crate::protocols::pypi::source::page_of(&lookup.document);
            Project {
                releases: releases(&page, &self.target),
            }
        } else {
            Project {
                releases: Vec::new(),
            }
        };
        let project = Arc::new(project);
        self.projects
            .borrow_mut()
            .insert(name.to_owned(), Arc::clone(&project));
        Ok(project)
    }

    fn release(&self, name: &str, version: &Version) -> Result<Option<Release>, Failed> {
        Ok(self
            .project(name)?
            .releases
            .iter()
            .find(|r| r.version == *version)
            .cloned())
    }

    /// The core metadata of `release` (`None`: not knowable without building).
    fn metadata(&self, name: &str, release: &Release) -> Result<Option<String>, String> {
        let file = &release.file;
        let read = |filename: &str, limit: u64| {
            self.runtime
                .block_on(
                    self.repo
                        .file_bytes(&self.engine, &self.blobs, name, filename, limit),
                )
                .map_err(|error| error.to_string())
        };
        if matches!(file.core_metadata, CoreMetadata::Available(_)) {
            let bytes = read(
                &format!("{}{METADATA_SUFFIX}", file.filename),
                MAX_METADATA_FILE,
            )?;
            return Ok(Some(String::from_utf8_lossy(&bytes).into_owned()));
        }
        if file.size.is_some_and(|size| size > MAX_DISTRIBUTION) {
            return Err(format!(
                "`{}` is larger than {MAX_DISTRIBUTION} bytes and has no core metadata file",
                file.filename
            ));
        }
        let bytes = read(&file.filename, MAX_DISTRIBUTION)?;
        let cursor = std::io::Cursor::new(bytes);
        if file.filename.ends_with(".whl") {
            core_metadata::from_wheel(cursor).map(Some)
        } else {
            core_metadata::from_sdist(cursor, &file.filename).map(Some)
        }
    }

    fn note(&self, name: &str, version: &Version, note: String) {
        self.notes
            .borrow_mut()
            .entry((name.to_owned(), version.clone()))
            .or_default()
            .push(note);
    }

    fn see(&self, package: &Package) {
        let mut seen = self.seen.borrow_mut();
        let next = seen.len();
        seen.entry(package.clone()).or_insert(next);
    }

    /// What `requirement` asks of `PubGrub` (`None`: its marker is false here).
    fn constraints(
        &self,
        requirement: &Requirement<pep508_rs::VerbatimUrl>,
        extras: &[ExtraName],
    ) -> Result<Option<Vec<(Package, Range)>>, String> {
        if !requirement.marker.evaluate(&self.target.markers, extras) {
            return Ok(None);
        }
        let name = requirement.name.to_string();
        let range = match &requirement.version_or_url {
            None => Range::full(),
            Some(VersionOrUrl::VersionSpecifier(specifiers)) => {
                if specifiers.iter().any(|s| s.version().any_prerelease()) {
                    self.pre_releases.borrow_mut().insert(name.clone());
                }
                Range::from(specifiers.clone())
            }
            Some(VersionOrUrl::Url(url)) => {
                return Err(format!(
                    "`{name} @ {url}`: direct URL requirements are not resolved by granary"
                ))
            }
        };
        let mut out = vec![(Package::Project(name.clone()), range.clone())];
        for extra in &requirement.extras {
            out.push((
                Package::Extra(name.clone(), extra.to_string()),
                range.clone(),
            ));
        }
        Ok(Some(out))
    }
}

impl Provider {
    /// What the requirements file asks, as `PubGrub` constraints.
    fn root_dependencies(&self) -> Dependencies<Package, Range, String> {
        let mut constraints: pubgrub::Map<Package, Range> = pubgrub::Map::default();
        let mut declared = Vec::new();
        for requirement in &self.root_requirements {
            match self.constraints(requirement, &[]) {
                Ok(None) => {}
                Ok(Some(asks)) => {
                    for (dependency, range) in asks {
                        self.see(&dependency);
                        declared.push(Declared {
                            to: dependency.clone(),
                            requirement: requirement.to_string(),
                            kind: "runtime",
                        });
                        let merged = constraints
                            .get(&dependency)
                            .map_or_else(|| range.clone(), |r| r.intersection(&range));
                        constraints.insert(dependency, merged);
                    }
                }
                Err(error) => self.note(ROOT_NAME, &Version::new([0]), error),
            }
        }
        self.declared
            .borrow_mut()
            .insert((Package::Root, Version::new([0])), declared);
        Dependencies::Available(constraints)
    }
}

/// The requirements of a `requirements.txt`: one PEP 508 requirement a line, with
/// comments, line continuations and pip's per-requirement options (`--hash`) as pip
/// reads them; index options are ignored (granary is the index); `-r`, `-c` and
/// `-e` lines are refused, since they name files or trees granary does not have.
///
/// # Errors
/// The first line that is not a requirement, by number.
pub fn requirements_file(text: &str) -> Result<Vec<Requirement<pep508_rs::VerbatimUrl>>, String> {
    let mut requirements = Vec::new();
    for (number, requirement) in super::lockfile::logical_lines(text) {
        if let Some(option) = requirement.strip_prefix('-') {
            let name = option.split([' ', '=']).next().unwrap_or_default();
            if matches!(
                name,
                "r" | "-requirement" | "c" | "-constraint" | "e" | "-editable"
            ) {
                return Err(format!(
                    "line {number}: `{requirement}` names another file or a local tree; send one file of requirements"
                ));
            }
            continue;
        }
        requirements.push(
            parse_requirement(&requirement)
                .map_err(|error| format!("line {number}: `{requirement}`: {error}"))?,
        );
    }
    if requirements.is_empty() {
        return Err("the requirements file names no requirement".to_owned());
    }
    Ok(requirements)
}

/// The releases of `page` that can be installed on `target`, highest first.
fn releases(page: &ProjectPage, target: &Target) -> Vec<Release> {
    let python = target.python_version();
    let mut by_version: BTreeMap<Version, Vec<&DistFile>> = BTreeMap::new();
    for file in &page.files {
        let Some(version) = version_of(&file.filename) else {
            continue;
        };
        let suits_python = file.requires_python.as_deref().is_none_or(|text| {
            VersionSpecifiers::from_str(text).map_or(true, |s| s.contains(&python))
        });
        let suits = if file.filename.ends_with(".whl") {
            target.accepts_wheel(&file.filename)
        } else {
            [".tar.gz", ".zip"]
                .iter()
                .any(|ext| file.filename.ends_with(ext))
        };
        if suits && suits_python {
            by_version.entry(version).or_default().push(file);
        }
    }
    by_version
        .into_iter()
        .rev()
        .map(|(version, files)| {
            let live: Vec<&&DistFile> = files
                .iter()
                .filter(|f| matches!(f.yanked, Yanked::No))
                .collect();
            let pick = |from: &[&DistFile]| {
                from.iter()
                    .find(|f| f.filename.ends_with(".whl"))
                    .or_else(|| from.first())
                    .map(|f| (*f).clone())
            };
            let yanked = live.is_empty();
            let file = if yanked {
                pick(&files)
            } else {
                pick(&live.into_iter().copied().collect::<Vec<_>>())
            }
            .expect("a version is listed only with a file");
            Release {
                version,
                yanked,
                file,
            }
        })
        .collect()
}

impl DependencyProvider for Provider {
    type P = Package;
    type V = Version;
    type VS = Range;
    /// Packages with more conflicts first, then in the order they were first seen
    /// (breadth-first, as installers read requirements).
    type Priority = (u32, std::cmp::Reverse<usize>);
    type M = String;
    type Err = Failed;

    fn prioritize(
        &self,
        package: &Package,
        _range: &Range,
        statistics: &PackageResolutionStatistics,
    ) -> Self::Priority {
        let seen = self
            .seen
            .borrow()
            .get(package)
            .copied()
            .unwrap_or(usize::MAX);
        (statistics.conflict_count(), std::cmp::Reverse(seen))
    }

    fn choose_version(&self, package: &Package, range: &Range) -> Result<Option<Version>, Failed> {
        if *package == Package::Root {
            return Ok(range.as_singleton().cloned());
        }
        let name = package.project();
        let project = self.project(name)?;
        let pinned = range.as_singleton().is_some();
        let usable =
            |release: &&Release| range.contains(&release.version) && (!release.yanked || pinned);
        let final_release = project
            .releases
            .iter()
            .filter(usable)
            .find(|r| !r.version.any_prerelease());
        let allow_pre = self.pre_releases.borrow().contains(name);
        let chosen = if allow_pre || final_release.is_none() {
            project.releases.iter().find(usable)
        } else {
            final_release
        };
        Ok(chosen.map(|r| r.version.clone()))
    }

    fn should_cancel(&self) -> Result<(), Failed> {
        if self.steps.get() > MAX_STEPS {
            return Err(Failed(format!(
                "the resolution gave up after reading {MAX_STEPS} versions' dependencies"
            )));
        }
        Ok(())
    }

    fn get_dependencies(
        &self,
        package: &Package,
        version: &Version,
    ) -> Result<Dependencies<Package, Range, String>, Failed> {
        self.steps.set(self.steps.get() + 1);
        if *package == Package::Root {
            return Ok(self.root_dependencies());
        }
        let name = package.project().to_owned();
        let extras: Vec<ExtraName> = match package {
            Package::Extra(_, extra) => ExtraName::new(extra.clone()).into_iter().collect(),
            Package::Project(_) | Package::Root => Vec::new(),
        };
        let Some(release) = self.release(&name, version)? else {
            return Ok(Dependencies::Unavailable(format!(
                "{name} {version} has no file for this target"
            )));
        };
        let text = match self.metadata(&name, &release) {
            Ok(Some(text)) => text,
            Ok(None) => String::new(),
            Err(reason) => {
                self.note(&name, version, format!("{name} {version}: {reason}"));
                return Ok(Dependencies::Unavailable(reason));
            }
        };
        let fields = CoreMetadataFields::parse(&text);
        let sdist = !release.file.filename.ends_with(".whl");
        let (status, reason, _, _) = from_core_metadata(&fields, sdist);
        let mut constraints: pubgrub::Map<Package, Range> = pubgrub::Map::default();
        let mut declared = Vec::new();
        if let Package::Extra(..) = package {
            // The extra is the project at the same version, plus what the extra adds.
            constraints.insert(
                Package::Project(name.clone()),
                Range::singleton(version.clone()),
            );
            if let Package::Extra(_, extra) = package {
                let provides = fields
                    .all("Provides-Extra")
                    .any(|p| normalize(p) == normalize(extra));
                if !provides {
                    self.note(
                        &name,
                        version,
                        format!("{name} {version} does not provide the extra `{extra}`"),
                    );
                }
            }
        }
        if status == ExtractionStatus::Unknown {
            self.note(
                &name,
                version,
                format!(
                    "{name} {version}: dependencies unknown ({})",
                    reason.unwrap_or_default()
                ),
            );
        } else {
            for line in fields.all("Requires-Dist") {
                let requirement = match parse_requirement(line) {
                    Ok(requirement) => requirement,
                    Err(error) => {
                        self.note(
                            &name,
                            version,
                            format!("{name} {version}: `{line}`: {error}"),
                        );
                        continue;
                    }
                };
                // An extra's package keeps only what its extra adds (the rest comes
                // with the project itself).
                if !extras.is_empty() && requirement.marker.evaluate(&self.target.markers, &[]) {
                    continue;
                }
                match self.constraints(&requirement, &extras) {
                    Ok(None) => {}
                    Ok(Some(asks)) => {
                        for (dependency, range) in asks {
                            if dependency.project() == name
                                && dependency == Package::Project(name.clone())
                            {
                                continue;
                            }
                            self.see(&dependency);
                            declared.push(Declared {
                                to: dependency.clone(),
                                requirement: line.trim().to_owned(),
                                kind: if extras.is_empty() {
                                    "runtime"
                                } else {
                                    "extra"
                                },
                            });
                            let merged = constraints
                                .get(&dependency)
                                .map_or_else(|| range.clone(), |r| r.intersection(&range));
                            constraints.insert(dependency, merged);
                        }
                    }
                    Err(error) => self.note(&name, version, error),
                }
            }
        }
        self.declared
            .borrow_mut()
            .insert((package.clone(), version.clone()), declared);
        Ok(Dependencies::Available(constraints))
    }
}

/// Where a resolution starts.
enum Root {
    /// A project version (the API's `PROJECT/VERSION/resolve`).
    Release(String, Version),
    /// A requirements file's requirements.
    File(Vec<Requirement<pep508_rs::VerbatimUrl>>),
}

impl PypiRepo {
    /// The dependency tree of `project` `version` for `options.target`.
    pub(super) async fn resolve_tree(
        &self,
        engine: &CacheEngine,
        blobs: &Arc<dyn BlobStore>,
        project: &str,
        version: &str,
        options: &ResolveOptions,
    ) -> Result<Graph, RequestError> {
        let project = Self::checked_project(project)?;
        let version = Version::from_str(version).map_err(|error| {
            RequestError::BadRequest(format!("`{version}` is not a PEP 440 version: {error}"))
        })?;
        self.solve_from(engine, blobs, Root::Release(project, version), options)
            .await
    }

    /// The tree a `requirements.txt` installs, for `options.target`.
    pub(super) async fn resolve_requirements(
        &self,
        engine: &CacheEngine,
        blobs: &Arc<dyn BlobStore>,
        file: &str,
        options: &ResolveOptions,
    ) -> Result<Graph, RequestError> {
        let requirements = requirements_file(file).map_err(RequestError::BadRequest)?;
        self.solve_from(engine, blobs, Root::File(requirements), options)
            .await
    }

    async fn solve_from(
        &self,
        engine: &CacheEngine,
        blobs: &Arc<dyn BlobStore>,
        root: Root,
        options: &ResolveOptions,
    ) -> Result<Graph, RequestError> {
        let target = Target::parse(options.target.as_deref()).map_err(RequestError::BadRequest)?;
        let mut provider = Provider {
            repo: self.clone(),
            engine: engine.clone(),
            blobs: Arc::clone(blobs),
            runtime: tokio::runtime::Handle::current(),
            target: target.clone(),
            projects: RefCell::default(),
            declared: RefCell::default(),
            notes: RefCell::default(),
            pre_releases: RefCell::default(),
            seen: RefCell::default(),
            documents: RefCell::default(),
            root_requirements: Vec::new(),
            steps: std::cell::Cell::new(0),
        };
        let root = match root {
            Root::Release(name, version) => Some((name, version)),
            Root::File(requirements) => {
                provider.root_requirements = requirements;
                None
            }
        };
        let max_depth = options.max_depth;
        tokio::task::spawn_blocking(move || solve(&provider, root.as_ref(), &target, max_depth))
            .await
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
    }
}

/// Runs `PubGrub` from a project version (or, `None`, the provider's requirements
/// file) and turns its answer into a graph.
fn solve(
    provider: &Provider,
    root: Option<&(String, Version)>,
    target: &Target,
    max_depth: Option<usize>,
) -> Result<Graph, RequestError> {
    let mut builder = GraphBuilder::default();
    let (root_package, root_version, root_id) = match root {
        Some((name, version)) => {
            // The root must exist at that version (a client asking for it would be
            // told so).
            let Some(release) = provider
                .release(name, version)
                .map_err(|Failed(reason)| RequestError::NotFound(reason))?
            else {
                return Err(RequestError::NotFound(format!(
                    "`{name}` {version} has no release installable on {}",
                    target.name()
                )));
            };
            let id = builder.node(
                name,
                &version.to_string(),
                release.file.hashes.get("sha256").map(String::as_str),
            );
            (Package::Project(name.clone()), version.clone(), id)
        }
        None => (
            Package::Root,
            Version::new([0]),
            builder.node(ROOT_NAME, "", None),
        ),
    };
    provider.see(&root_package);
    match pubgrub::resolve(provider, root_package, root_version) {
        Ok(solution) => {
            let mut chosen: Vec<(&Package, &Version)> = solution.iter().collect();
            chosen.sort();
            let mut ids = HashMap::new();
            ids.insert(ROOT_NAME.to_owned(), root_id);
            for (package, at) in &chosen {
                if let Package::Project(name) = package {
                    let digest = provider
                        .release(name, at)
                        .ok()
                        .flatten()
                        .and_then(|r| r.file.hashes.get("sha256").cloned());
                    ids.insert(
                        name.clone(),
                        builder.node(name, &at.to_string(), digest.as_deref()),
                    );
                }
            }
            for (package, at) in &chosen {
                let declared = provider
                    .declared
                    .borrow()
                    .get(&((*package).clone(), (*at).clone()))
                    .cloned()
                    .unwrap_or_default();
                let from = ids[package.project()];
                for edge in declared {
                    if let Some(&to) = ids.get(edge.to.project()) {
                        if to != from {
                            builder.edge(from, to, &edge.requirement, edge.kind);
                        }
                    }
                }
            }
            for ((name, at), notes) in provider.notes.borrow().iter() {
                let chosen_here =
                    name == ROOT_NAME || solution.get(&Package::Project(name.clone())) == Some(at);
                if let Some(&id) = ids.get(name).filter(|_| chosen_here) {
                    for note in notes {
                        builder.node_error(id, note.clone());
                    }
                }
            }
        }
        Err(pubgrub::PubGrubError::NoSolution(mut derivation)) => {
            derivation.collapse_no_versions();
            let report =
                <pubgrub::DefaultStringReporter as pubgrub::Reporter<_, _, _>>::report(&derivation);
            builder.node_error(root_id, report);
        }
        Err(
            pubgrub::PubGrubError::ErrorChoosingVersion { source, .. }
            | pubgrub::PubGrubError::ErrorRetrievingDependencies { source, .. }
            | pubgrub::PubGrubError::ErrorInShouldCancel(source),
        ) => {
            return Err(RequestError::NotFound(source.0));
        }
    }
    let mut graph = builder.finish(super::keys::FORMAT, target.name(), max_depth);
    graph.documents = provider.documents.borrow().clone();
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_read_and_name_themselves() {
        assert_eq!(Target::parse(None).expect("default").name(), DEFAULT_TARGET);
        assert_eq!(
            Target::parse(Some("3.11")).expect("short").name(),
            "3.11-linux-x86_64"
        );
        let windows = Target::parse(Some("3.13-windows-x86_64")).expect("windows");
        assert!(windows.accepts_wheel("a-1.0-cp313-cp313-win_amd64.whl"));
        assert!(!windows.accepts_wheel("a-1.0-cp313-cp313-manylinux_2_17_x86_64.whl"));
        for bad in [
            "2.7",
            "3",
            "3.x",
            "3.12-plan9",
            "3.12-linux-",
            "3.12-linux-x/86",
        ] {
            assert!(Target::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn wheel_tags_are_matched_against_the_target() {
        let linux = Target::parse(Some("3.12-linux-x86_64")).expect("target");
        for wheel in [
            "a-1.0-py3-none-any.whl",
            "a-1.0-py2.py3-none-any.whl",
            "a-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "a-1.0-cp39-abi3-manylinux2014_x86_64.whl",
            "a-1.0-1build-py38-none-any.whl",
        ] {
            assert!(linux.accepts_wheel(wheel), "{wheel}");
        }
        for wheel in [
            "a-1.0-cp311-cp311-manylinux2014_x86_64.whl",
            "a-1.0-cp312-cp312-manylinux2014_aarch64.whl",
            "a-1.0-cp312-cp312-macosx_11_0_arm64.whl",
            "a-1.0-py2-none-any.whl",
            "a-1.0-cp313-abi3-manylinux2014_x86_64.whl",
            "not-a-wheel.tar.gz",
        ] {
            assert!(!linux.accepts_wheel(wheel), "{wheel}");
        }
    }

    #[test]
    fn requirements_files_are_read_as_pip_reads_them() {
        let requirements = requirements_file(
            "# comment\n--index-url http://127.0.0.1:9/simple/\n\
             Alpha[fast]>=1.0 ; python_version >= '3.8'  # why\n\
             beta==1.1 \\\n    --hash=sha256:00 \\\n    --hash=sha256:11\n\n",
        )
        .expect("reads");
        let names: Vec<String> = requirements.iter().map(|r| r.name.to_string()).collect();
        assert_eq!(names, ["alpha", "beta"]);
        assert_eq!(requirements[0].extras.len(), 1);
        assert!(requirements_file("-e .\n")
            .expect_err("refused")
            .contains("line 1"));
        assert!(requirements_file("a\n\nb c d\n")
            .expect_err("refused")
            .contains("line 3"));
        assert!(requirements_file("# only a comment\n").is_err());
    }
}
