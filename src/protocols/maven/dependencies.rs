//! Dependencies of Maven artifacts, from their POM made effective: parents (fetched
//! through the engine), properties and `${...}` interpolation, `dependencyManagement`
//! with `scope=import` BOMs, then each declared dependency with its version, scope,
//! optional flag, type, classifier and exclusions. What cannot be made effective (a
//! parent or BOM that cannot be fetched, a version nothing supplies) makes the record
//! `partial`, with the reason.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::json;

use super::pom::{Pom, PomDependency};
use super::{layout, MavenRepo};
use crate::engine::{CacheEngine, CacheKey, Category, Published};
use crate::protocols::contents::{artifact_bytes, published_bytes};
use crate::protocols::dependencies::{Dependency, Extraction, ExtractionStatus, EXTRACTOR_VERSION};
use crate::protocols::RequestError;
use crate::storage::BlobStore;

/// Parents and imported BOMs followed (real chains are a few deep).
const MAX_DEPTH: usize = 10;
/// Largest POM read.
const MAX_POM: u64 = 4 * 1024 * 1024;
/// Rounds of `${...}` expansion (a property naming another).
const INTERPOLATION_ROUNDS: usize = 8;

/// A POM with its parents' declarations folded in.
#[derive(Debug, Default)]
pub struct EffectivePom {
    pub group: String,
    pub artifact: String,
    pub version: String,
    pub properties: BTreeMap<String, String>,
    /// Managed dependencies, nearest declaration first (imports after local ones).
    pub managed: Vec<PomDependency>,
    pub dependencies: Vec<PomDependency>,
    /// What could not be made effective.
    pub problems: Vec<String>,
}

/// A declared dependency of an effective POM, with what the POM's own management
/// supplies filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub group: String,
    pub artifact: String,
    /// A version, or a range (`[1.0,2.0)`).
    pub version: String,
    /// `compile` when neither the declaration nor its management says.
    pub scope: String,
    /// The `type` (`jar` when unsaid).
    pub kind: String,
    pub classifier: Option<String>,
    pub optional: bool,
    /// `groupId:artifactId` patterns (`*` matches any), its own and its management's.
    pub exclusions: Vec<String>,
}

impl EffectivePom {
    /// The managed entry for `group:artifact` of `kind` and `classifier`: the
    /// nearest declaration (a POM's own before its parents', local before imported).
    #[must_use]
    pub fn managed_for(
        &self,
        group: &str,
        artifact: &str,
        kind: &str,
        classifier: Option<&str>,
    ) -> Option<&PomDependency> {
        self.managed.iter().find(|m| {
            m.group == group
                && m.artifact == artifact
                && m.kind.as_deref().unwrap_or("jar") == kind
                && m.classifier.as_deref() == classifier
        })
    }

    /// Every declared dependency with its version and scope; one that nothing gives a
    /// version is left out and said in the second list.
    #[must_use]
    pub fn declared(&self) -> (Vec<Declared>, Vec<String>) {
        let mut problems = Vec::new();
        let declared = self
            .dependencies
            .iter()
            .filter_map(|declared| {
                let kind = declared.kind.clone().unwrap_or_else(|| "jar".to_owned());
                let managed = self.managed_for(
                    &declared.group,
                    &declared.artifact,
                    &kind,
                    declared.classifier.as_deref(),
                );
                let version = declared
                    .version
                    .clone()
                    .or_else(|| managed.and_then(|m| m.version.clone()));
                let Some(version) = version.filter(|v| !v.contains("${")) else {
                    problems.push(format!(
                        "no version for {}:{}",
                        declared.group, declared.artifact
                    ));
                    return None;
                };
                let scope = declared
                    .scope
                    .clone()
                    .or_else(|| managed.and_then(|m| m.scope.clone()))
                    .unwrap_or_else(|| "compile".to_owned());
                let mut exclusions = declared.exclusions.clone();
                if let Some(managed) = managed {
                    exclusions.extend(managed.exclusions.iter().cloned());
                }
                Some(Declared {
                    group: declared.group.clone(),
                    artifact: declared.artifact.clone(),
                    version,
                    scope,
                    kind,
                    classifier: declared.classifier.clone(),
                    optional: declared.optional.as_deref() == Some("true"),
                    exclusions,
                })
            })
            .collect();
        (declared, problems)
    }
}

/// `${name}` replaced from `properties`, repeatedly (bounded); unknown names stay.
#[must_use]
pub fn interpolate(value: &str, properties: &BTreeMap<String, String>) -> String {
    let mut current = value.to_owned();
    for _ in 0..INTERPOLATION_ROUNDS {
        let mut next = String::with_capacity(current.len());
        let mut rest = current.as_str();
        let mut changed = false;
        while let Some(start) = rest.find("${") {
            next.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            if let Some(end) = after.find('}') {
                let name = &after[..end];
                if let Some(found) = properties.get(name) {
                    next.push_str(found);
                    changed = true;
                } else {
                    next.push_str(&rest[start..=start + 2 + end]);
                }
                rest = &after[end + 1..];
            } else {
                next.push_str(&rest[start..]);
                rest = "";
            }
        }
        next.push_str(rest);
        current = next;
        if !changed {
            break;
        }
    }
    current
}

fn interpolate_dependency(dependency: &mut PomDependency, properties: &BTreeMap<String, String>) {
    let fix = |value: &mut String| *value = interpolate(value, properties);
    fix(&mut dependency.group);
    fix(&mut dependency.artifact);
    for field in [
        &mut dependency.version,
        &mut dependency.scope,
        &mut dependency.kind,
        &mut dependency.classifier,
        &mut dependency.optional,
    ]
    .into_iter()
    .flatten()
    {
        fix(field);
    }
}

/// The path of a POM in the standard layout.
#[must_use]
pub fn pom_path(group: &str, artifact: &str, version: &str) -> String {
    format!(
        "{}/{artifact}/{version}/{artifact}-{version}.pom",
        group.replace('.', "/")
    )
}

impl MavenRepo {
    /// The POM at `group:artifact:version`, fetched through the engine: not found
    /// when the upstream has none (or it is not a POM).
    ///
    /// # Errors
    /// Each names the POM's path.
    pub(super) async fn pom(
        &self,
        engine: &CacheEngine,
        blobs: &Arc<dyn BlobStore>,
        group: &str,
        artifact: &str,
        version: &str,
    ) -> Result<Pom, RequestError> {
        let path = pom_path(group, artifact, version);
        let named = |error: RequestError| match error {
            RequestError::NotFound(reason) => RequestError::NotFound(format!("`{path}`: {reason}")),
            RequestError::BadRequest(reason) => {
                RequestError::BadRequest(format!("`{path}`: {reason}"))
            }
            other => other,
        };
        let lookup = self
            .immutable(engine, &path, layout::content_type(&path))
            .await
            .map_err(named)?;
        let bytes = artifact_bytes(lookup, blobs, MAX_POM, &path)
            .await
            .map_err(named)?;
        Pom::parse(&bytes)
            .map_err(|e| RequestError::NotFound(format!("`{path}` is not a POM: {e}")))
    }

    /// `pom` with its parents folded in and its imported BOMs' managed
    /// dependencies appended; `depth` bounds the parents and imports followed.
    pub(super) fn effective<'a>(
        &'a self,
        engine: &'a CacheEngine,
        blobs: &'a Arc<dyn BlobStore>,
        pom: Pom,
        depth: usize,
    ) -> BoxFuture<'a, EffectivePom> {
        async move {
            let mut problems = Vec::new();
            let mut chain = vec![pom];
            while let Some((group, artifact, version)) = chain.last().and_then(|p| p.parent.clone())
            {
                if chain.len() > MAX_DEPTH {
                    problems.push(format!("parents deeper than {MAX_DEPTH}"));
                    break;
                }
                match self
                    .pom(engine, blobs, &group, &artifact, &version)
                    .await
                    .map_err(|e| e.to_string())
                {
                    Ok(parent) => chain.push(parent),
                    Err(reason) => {
                        problems.push(format!("parent {group}:{artifact}:{version}: {reason}"));
                        break;
                    }
                }
            }
            let own = &chain[0];
            let inherited = |field: fn(&Pom) -> Option<&String>| {
                chain
                    .iter()
                    .find_map(|p| field(p).cloned())
                    .unwrap_or_default()
            };
            let group = own
                .group
                .clone()
                .or_else(|| own.parent.as_ref().map(|p| p.0.clone()))
                .unwrap_or_else(|| inherited(|p| p.group.as_ref()));
            let version = own
                .version
                .clone()
                .or_else(|| own.parent.as_ref().map(|p| p.2.clone()))
                .unwrap_or_else(|| inherited(|p| p.version.as_ref()));
            let artifact = own.artifact.clone().unwrap_or_default();
            let mut properties = BTreeMap::new();
            for pom in chain.iter().rev() {
                properties.extend(pom.properties.clone());
            }
            for (name, value) in [
                ("project.groupId", &group),
                ("pom.groupId", &group),
                ("project.artifactId", &artifact),
                ("pom.artifactId", &artifact),
                ("project.version", &version),
                ("pom.version", &version),
            ] {
                properties.insert(name.to_owned(), value.clone());
            }
            if let Some((parent_group, _, parent_version)) = &own.parent {
                properties.insert("project.parent.version".to_owned(), parent_version.clone());
                properties.insert("project.parent.groupId".to_owned(), parent_group.clone());
            }
            let mut managed: Vec<PomDependency> = chain
                .iter()
                .flat_map(|p| p.managed.iter().cloned())
                .collect();
            // Inherited dependencies first; a child's own declaration replaces them.
            let mut dependencies: Vec<PomDependency> = Vec::new();
            for pom in chain.iter().rev() {
                for dependency in &pom.dependencies {
                    dependencies.retain(|d| {
                        !(d.group == dependency.group && d.artifact == dependency.artifact)
                    });
                    dependencies.push(dependency.clone());
                }
            }
            for dependency in managed.iter_mut().chain(dependencies.iter_mut()) {
                interpolate_dependency(dependency, &properties);
            }
            // `scope=import` BOMs: their managed dependencies come after the local ones.
            let (imports, local): (Vec<_>, Vec<_>) = managed.into_iter().partition(|m| {
                m.scope.as_deref() == Some("import") && m.kind.as_deref() == Some("pom")
            });
            managed = local;
            for import in imports {
                let Some(version) = import.version.clone() else {
                    problems.push(format!(
                        "import {}:{} has no version",
                        import.group, import.artifact
                    ));
                    continue;
                };
                if depth >= MAX_DEPTH {
                    problems.push(format!("imports deeper than {MAX_DEPTH}"));
                    continue;
                }
                match self
                    .pom(engine, blobs, &import.group, &import.artifact, &version)
                    .await
                    .map_err(|e| e.to_string())
                {
                    Ok(bom) => {
                        let bom = self.effective(engine, blobs, bom, depth + 1).await;
                        problems.extend(bom.problems);
                        managed.extend(bom.managed);
                    }
                    Err(reason) => problems.push(format!(
                        "import {}:{}:{version}: {reason}",
                        import.group, import.artifact
                    )),
                }
            }
            EffectivePom {
                group,
                artifact,
                version,
                properties,
                managed,
                dependencies,
                problems,
            }
        }
        .boxed()
    }

    pub(super) async fn extract(
        &self,
        engine: &CacheEngine,
        blobs: &Arc<dyn BlobStore>,
        published: &Published,
    ) -> Option<Extraction> {
        let prefix = CacheKey::repo_prefix(Category::Artifact, layout::FORMAT, &self.name);
        let path = published.key.as_str().strip_prefix(&prefix)?;
        if !path.ends_with(".pom") {
            return None;
        }
        let bytes = published_bytes(published, blobs, MAX_POM).await.ok()?;
        let pom = Pom::parse(&bytes).ok()?;
        let packaging = pom.packaging.clone().unwrap_or_else(|| "jar".to_owned());
        let effective = self.effective(engine, blobs, pom, 0).await;
        let (declared, mut problems) = effective.declared();
        problems.splice(0..0, effective.problems.iter().cloned());
        let dependencies = declared
            .into_iter()
            .map(|declared| Dependency {
                name: format!("{}:{}", declared.group, declared.artifact),
                requirement: declared.version,
                kind: declared.scope,
                marker: None,
                optional: declared.optional,
                details: json!({
                    "type": declared.kind,
                    "classifier": declared.classifier,
                    "exclusions": declared.exclusions,
                }),
            })
            .collect();
        let filename = path.rsplit('/').next().unwrap_or(path).to_owned();
        Some(Extraction {
            digest: published.digest.as_str().to_owned(),
            repo: self.name.clone(),
            format: layout::FORMAT.to_owned(),
            project: format!("{}:{}", effective.group, effective.artifact),
            version: effective.version.clone(),
            filename,
            status: if problems.is_empty() {
                ExtractionStatus::Complete
            } else {
                ExtractionStatus::Partial
            },
            reason: (!problems.is_empty()).then(|| problems.join("; ")),
            extractor_version: EXTRACTOR_VERSION,
            attributes: json!({
                "packaging": packaging,
                "managed": effective.managed.len(),
            }),
            dependencies,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_expand_repeatedly_and_unknown_ones_stay() {
        let properties: BTreeMap<String, String> =
            [("a", "${b}-x"), ("b", "1.2"), ("loop", "${loop}")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        assert_eq!(interpolate("v${a}", &properties), "v1.2-x");
        assert_eq!(
            interpolate("${missing}.${b}", &properties),
            "${missing}.1.2"
        );
        assert_eq!(interpolate("${loop}", &properties), "${loop}");
        assert_eq!(interpolate("${unclosed", &properties), "${unclosed");
    }
}
