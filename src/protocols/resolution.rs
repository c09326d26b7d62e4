//! The vocabulary of transitive resolution, shared by every format's resolver: what
//! is asked (a root, options, a target environment) and what is answered (a graph of
//! name@version nodes and requirement edges).

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

/// Changes whenever any resolver's answers may change; part of every cached
/// resolution's key.
pub const RESOLVER_VERSION: u32 = 1;

/// Bound on the packages one resolution activates (a hostile index cannot make it
/// unbounded).
pub const MAX_NODES: usize = 10_000;

/// What a resolution is asked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResolveOptions {
    /// Nodes deeper than this (edges from the root) are left out; `None`: all.
    pub max_depth: Option<usize>,
    /// Whether optional dependencies are followed (where the format has them and
    /// nothing else switches them on).
    pub include_optional: bool,
    /// The environment markers are evaluated for, in the format's terms; `None`: the
    /// format's default, which the answer names.
    pub target: Option<String>,
}

/// How a node relates to the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Relation {
    #[serde(rename = "SELF")]
    Root,
    #[serde(rename = "DIRECT")]
    Direct,
    #[serde(rename = "INDIRECT")]
    Indirect,
}

/// One package version in the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub id: usize,
    pub name: String,
    pub version: String,
    /// The artifact's SHA-256 where the index states it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub relation: Relation,
    /// Edges from the root on the shortest path.
    pub depth: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// `from` depends on `to` through `requirement`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub requirement: String,
    /// The format's kind of dependency (`normal`, `build`, `optional`, `peer`, …).
    pub kind: String,
}

/// A resolution's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Graph {
    /// `<format> <RESOLVER_VERSION>`.
    pub resolver: String,
    /// The target markers were evaluated for (the default when none was asked).
    pub target: String,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// What could not be resolved, said as the client would say it.
    pub errors: Vec<String>,
    /// Every index document read, by project: its fingerprint (`None`: the upstream
    /// said it does not exist). A cached answer holds while each is unchanged.
    #[serde(skip)]
    pub documents: BTreeMap<String, Option<String>>,
}

/// What [`Graph::documents`] records for something the resolution could not read
/// (an upstream that failed): it matches no document, so the answer never holds and
/// the next request resolves again.
pub const UNREADABLE: &str = "unreadable";

/// The fingerprint of an index document, as [`Graph::documents`] records it.
#[must_use]
pub fn fingerprint(document: &crate::engine::IndexDocument) -> Option<String> {
    document.found.then(|| document.fingerprint().to_owned())
}

/// Collects nodes and edges while a resolver runs; [`GraphBuilder::finish`] numbers
/// depths and relations from the root and applies `max_depth`.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    nodes: Vec<(String, String, Option<String>, Vec<String>)>,
    ids: BTreeMap<(String, String), usize>,
    edges: std::collections::BTreeSet<Edge>,
    errors: Vec<String>,
}

impl GraphBuilder {
    /// The node of `name@version`, added on first sight (the first is the root).
    pub fn node(&mut self, name: &str, version: &str, digest: Option<&str>) -> usize {
        let key = (name.to_owned(), version.to_owned());
        if let Some(id) = self.ids.get(&key) {
            return *id;
        }
        let id = self.nodes.len();
        self.nodes.push((
            name.to_owned(),
            version.to_owned(),
            digest.map(str::to_owned),
            Vec::new(),
        ));
        self.ids.insert(key, id);
        id
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn edge(&mut self, from: usize, to: usize, requirement: &str, kind: &str) {
        self.edges.insert(Edge {
            from,
            to,
            requirement: requirement.to_owned(),
            kind: kind.to_owned(),
        });
    }

    /// An error about one node (a requirement it could not satisfy).
    pub fn node_error(&mut self, id: usize, error: String) {
        if let Some(node) = self.nodes.get_mut(id) {
            if !node.3.contains(&error) {
                node.3.push(error.clone());
            }
        }
        if !self.errors.contains(&error) {
            self.errors.push(error);
        }
    }

    #[must_use]
    pub fn finish(self, format: &str, target: String, max_depth: Option<usize>) -> Graph {
        // Breadth-first from the root (node 0): the shortest depth of every node.
        let mut depth = vec![usize::MAX; self.nodes.len()];
        let mut queue = VecDeque::new();
        if !self.nodes.is_empty() {
            depth[0] = 0;
            queue.push_back(0);
        }
        let mut out: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for edge in &self.edges {
            out.entry(edge.from).or_default().push(edge.to);
        }
        while let Some(at) = queue.pop_front() {
            for &next in out.get(&at).into_iter().flatten() {
                if depth[next] == usize::MAX {
                    depth[next] = depth[at] + 1;
                    queue.push_back(next);
                }
            }
        }
        let keep = |id: usize| depth[id] != usize::MAX && max_depth.is_none_or(|m| depth[id] <= m);
        // Kept nodes are numbered anew, in order of depth, then name and version.
        let mut kept: Vec<usize> = (0..self.nodes.len()).filter(|&id| keep(id)).collect();
        kept.sort_by(|&a, &b| {
            (depth[a], &self.nodes[a].0, &self.nodes[a].1).cmp(&(
                depth[b],
                &self.nodes[b].0,
                &self.nodes[b].1,
            ))
        });
        let renumber: BTreeMap<usize, usize> = kept
            .iter()
            .enumerate()
            .map(|(new, &old)| (old, new))
            .collect();
        let nodes = kept
            .iter()
            .enumerate()
            .map(|(id, &old)| {
                let (name, version, digest, errors) = self.nodes[old].clone();
                Node {
                    id,
                    name,
                    version,
                    digest,
                    relation: match depth[old] {
                        0 => Relation::Root,
                        1 => Relation::Direct,
                        _ => Relation::Indirect,
                    },
                    depth: depth[old],
                    errors,
                }
            })
            .collect();
        let mut edges: Vec<Edge> = self
            .edges
            .into_iter()
            .filter_map(|edge| {
                Some(Edge {
                    from: *renumber.get(&edge.from)?,
                    to: *renumber.get(&edge.to)?,
                    ..edge
                })
            })
            .collect();
        edges.sort();
        Graph {
            resolver: format!("{format} {RESOLVER_VERSION}"),
            target,
            nodes,
            edges,
            errors: self.errors,
            documents: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{GraphBuilder, Relation};

    #[test]
    fn depths_relations_and_max_depth() {
        let mut graph = GraphBuilder::default();
        let root = graph.node("root", "1", None);
        let a = graph.node("a", "1", Some("aa"));
        let b = graph.node("b", "2", None);
        let c = graph.node("c", "3", None);
        let orphan = graph.node("orphan", "0", None);
        graph.edge(root, b, "^2", "normal");
        graph.edge(root, a, "^1", "normal");
        graph.edge(a, c, "^3", "normal");
        graph.edge(b, a, "^1", "normal");
        let _ = orphan;
        let full = graph.finish("test", "all".to_owned(), None);
        let names: Vec<(&str, Relation, usize)> = full
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.relation, n.depth))
            .collect();
        assert_eq!(
            names,
            [
                ("root", Relation::Root, 0),
                ("a", Relation::Direct, 1),
                ("b", Relation::Direct, 1),
                ("c", Relation::Indirect, 2)
            ]
        );
        assert_eq!(full.edges.len(), 4);
        let mut graph = GraphBuilder::default();
        let root = graph.node("root", "1", None);
        let a = graph.node("a", "1", None);
        let c = graph.node("c", "3", None);
        graph.edge(root, a, "", "normal");
        graph.edge(a, c, "", "normal");
        let shallow = graph.finish("test", "all".to_owned(), Some(1));
        assert_eq!(shallow.nodes.len(), 2);
        assert_eq!(shallow.edges.len(), 1);
    }
}
