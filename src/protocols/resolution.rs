//! The vocabulary of transitive resolution, shared by every format's resolver: what
//! is asked (a root, options, a target environment) and what is answered (a graph of
//! name@version nodes and requirement edges).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
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
    /// What was already sent to the resolution's [`Progress`] while it ran.
    #[serde(skip)]
    pub streamed: Streamed,
}

/// The part of a [`Graph`] sent as lines while it was resolved: its first `nodes`
/// nodes and these edges (the graph's own numbering).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Streamed {
    pub nodes: usize,
    pub edges: BTreeSet<Edge>,
}

impl Graph {
    /// The NDJSON lines not yet streamed, then `done`: with what was streamed, the
    /// whole answer.
    #[must_use]
    pub fn remaining_lines(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for node in &self.nodes[self.streamed.nodes.min(self.nodes.len())..] {
            out.extend_from_slice(&ndjson_line("node", node));
        }
        for edge in self
            .edges
            .iter()
            .filter(|e| !self.streamed.edges.contains(e))
        {
            out.extend_from_slice(&ndjson_line("edge", edge));
        }
        out.extend_from_slice(&done_line(
            &self.resolver,
            &self.target,
            self.nodes.len(),
            self.edges.len(),
            &self.errors,
        ));
        out
    }
}

/// One NDJSON line of a resolution: `{"type": kind, …fields}`.
#[must_use]
pub fn ndjson_line(kind: &str, fields: &impl Serialize) -> Vec<u8> {
    let mut object = serde_json::Map::new();
    object.insert("type".to_owned(), kind.into());
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(fields) {
        object.extend(fields);
    }
    let mut line = serde_json::to_vec(&object).expect("a JSON object serializes");
    line.push(b'\n');
    line
}

/// The last line of a resolution: its totals, target and errors.
#[must_use]
pub fn done_line(
    resolver: &impl Serialize,
    target: &impl Serialize,
    nodes: usize,
    edges: usize,
    errors: &impl Serialize,
) -> Vec<u8> {
    ndjson_line(
        "done",
        &serde_json::json!({
            "resolver": resolver,
            "target": target,
            "nodes": nodes,
            "edges": edges,
            "errors": errors,
        }),
    )
}

/// Where a resolution sends its lines as they become final (`POST …/resolve`
/// streams them); [`Progress::none`] discards them.
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<dyn Fn(Bytes) + Send + Sync>>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(streaming)"
        } else {
            "Progress(none)"
        })
    }
}

impl Progress {
    /// Lines go nowhere.
    #[must_use]
    pub fn none() -> Self {
        Self(None)
    }

    /// Each line (one chunk of them at a time) goes to `sink`.
    #[must_use]
    pub fn to(sink: impl Fn(Bytes) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(sink)))
    }

    fn is_streaming(&self) -> bool {
        self.0.is_some()
    }

    fn send(&self, lines: Vec<u8>) {
        if let Some(sink) = &self.0 {
            if !lines.is_empty() {
                sink(Bytes::from(lines));
            }
        }
    }
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
///
/// A builder made with [`GraphBuilder::streaming`] also sends lines while the
/// resolver runs, a level of depth at a time, as soon as a level is final: every node
/// at that depth or less is [settled](GraphBuilder::settled) — the resolver will add
/// no edge from it and no error to it. Then no node can join those levels, so their
/// numbering (depth, then name and version) is the final answer's.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    nodes: Vec<(String, String, Option<String>, Vec<String>)>,
    ids: BTreeMap<(String, String), usize>,
    edges: BTreeSet<Edge>,
    errors: Vec<String>,
    stream: Stream,
}

/// What a streaming builder has sent.
#[derive(Debug, Default)]
struct Stream {
    progress: Progress,
    max_depth: Option<usize>,
    settled: Vec<bool>,
    /// Builder id → the id it was sent with.
    sent_as: BTreeMap<usize, usize>,
    /// The nodes sent, in order (their ids are their positions).
    nodes: Vec<Node>,
    levels: usize,
    edges: BTreeSet<Edge>,
}

fn relation_at(depth: usize) -> Relation {
    match depth {
        0 => Relation::Root,
        1 => Relation::Direct,
        _ => Relation::Indirect,
    }
}

impl GraphBuilder {
    /// A builder that sends final lines to `progress` as levels settle (see the
    /// type's documentation); `max_depth` as [`GraphBuilder::finish`] will be given.
    #[must_use]
    pub fn streaming(progress: Progress, max_depth: Option<usize>) -> Self {
        Self {
            stream: Stream {
                progress,
                max_depth,
                ..Stream::default()
            },
            ..Self::default()
        }
    }

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
        self.stream.settled.push(false);
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
        self.error(error);
    }

    /// An error about the resolution as a whole.
    pub fn error(&mut self, error: String) {
        if !self.errors.contains(&error) {
            self.errors.push(error);
        }
    }

    /// The resolver adds no more edges from node `id`, nor errors to it.
    pub fn settled(&mut self, id: usize) {
        if let Some(settled) = self.stream.settled.get_mut(id) {
            *settled = true;
        }
    }

    /// Sends every level that is now final, and the edges among the nodes sent (a
    /// streaming builder; otherwise nothing).
    pub fn flush(&mut self) {
        if !self.stream.progress.is_streaming() || self.nodes.is_empty() {
            return;
        }
        let depth = self.depths();
        let mut levels: Vec<Vec<usize>> = Vec::new();
        for (id, &d) in depth.iter().enumerate() {
            if d != usize::MAX {
                if levels.len() <= d {
                    levels.resize_with(d + 1, Vec::new);
                }
                levels[d].push(id);
            }
        }
        let mut lines = Vec::new();
        let stream = &mut self.stream;
        while let Some(level) = levels.get_mut(stream.levels) {
            let at = stream.levels;
            // Shallower levels were sent only once settled: this one is enough.
            if stream.max_depth.is_some_and(|max| at > max)
                || !level.iter().all(|&id| stream.settled[id])
            {
                break;
            }
            level.sort_by(|&a, &b| {
                (&self.nodes[a].0, &self.nodes[a].1).cmp(&(&self.nodes[b].0, &self.nodes[b].1))
            });
            for &id in level.iter() {
                let (name, version, digest, errors) = self.nodes[id].clone();
                let node = Node {
                    id: stream.nodes.len(),
                    name,
                    version,
                    digest,
                    relation: relation_at(at),
                    depth: at,
                    errors,
                };
                lines.extend_from_slice(&ndjson_line("node", &node));
                stream.sent_as.insert(id, node.id);
                stream.nodes.push(node);
            }
            stream.levels += 1;
        }
        for edge in &self.edges {
            if let (Some(&from), Some(&to)) =
                (stream.sent_as.get(&edge.from), stream.sent_as.get(&edge.to))
            {
                let sent = Edge {
                    from,
                    to,
                    ..edge.clone()
                };
                if !stream.edges.contains(&sent) {
                    lines.extend_from_slice(&ndjson_line("edge", &sent));
                    stream.edges.insert(sent);
                }
            }
        }
        stream.progress.send(lines);
    }

    /// Every node's depth: edges from the root (node 0) on the shortest path;
    /// `usize::MAX` for nodes the root does not reach.
    fn depths(&self) -> Vec<usize> {
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
        depth
    }

    #[must_use]
    pub fn finish(self, format: &str, target: String, max_depth: Option<usize>) -> Graph {
        let depth = self.depths();
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
        let nodes: Vec<Node> = kept
            .iter()
            .enumerate()
            .map(|(id, &old)| {
                let (name, version, digest, errors) = self.nodes[old].clone();
                Node {
                    id,
                    name,
                    version,
                    digest,
                    relation: relation_at(depth[old]),
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
        let stream = self.stream;
        if nodes.get(..stream.nodes.len()) != Some(stream.nodes.as_slice())
            || !stream.edges.iter().all(|e| edges.binary_search(e).is_ok())
        {
            // A resolver settled a node and then changed its level: what was sent
            // cannot be taken back. A bug, said loudly.
            tracing::error!(
                format,
                "a resolution streamed lines that its answer does not hold"
            );
            debug_assert!(false, "streamed lines differ from the answer");
        }
        Graph {
            resolver: format!("{format} {RESOLVER_VERSION}"),
            target,
            nodes,
            edges,
            errors: self.errors,
            documents: BTreeMap::new(),
            streamed: Streamed {
                nodes: stream.nodes.len(),
                edges: stream.edges,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ndjson_line, GraphBuilder, Progress, Relation};
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};

    /// A streaming builder and what it has sent so far.
    fn streaming(max_depth: Option<usize>) -> (GraphBuilder, Arc<Mutex<Vec<u8>>>) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&sent);
        let progress =
            Progress::to(move |lines| sink.lock().expect("sent").extend_from_slice(&lines));
        (GraphBuilder::streaming(progress, max_depth), sent)
    }

    fn lines(bytes: &[u8]) -> Vec<String> {
        String::from_utf8(bytes.to_vec())
            .expect("UTF-8")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_level_is_sent_once_every_node_in_it_is_settled_and_the_rest_at_the_end() {
        let (mut graph, sent) = streaming(None);
        let root = graph.node("root", "1", None);
        let b = graph.node("b", "2", None);
        let a = graph.node("a", "1", Some("aa"));
        graph.edge(root, b, "^2", "normal");
        graph.edge(root, a, "^1", "normal");
        graph.settled(root);
        graph.flush();
        assert_eq!(
            lines(&sent.lock().expect("sent")).len(),
            1,
            "the root alone"
        );
        let c = graph.node("c", "3", None);
        graph.edge(a, c, "^3", "normal");
        graph.node_error(a, "a: something".to_owned());
        graph.settled(a);
        graph.flush();
        assert_eq!(
            lines(&sent.lock().expect("sent")).len(),
            1,
            "b is not settled"
        );
        graph.edge(b, a, "^1", "normal");
        graph.settled(b);
        graph.flush();
        let early = lines(&sent.lock().expect("sent"));
        // root, then a and b (by name), then the three edges among them.
        assert_eq!(early.len(), 6, "{early:#?}");
        assert!(early[1].contains(r#""name":"a""#) && early[1].contains("a: something"));
        assert!(early[2].contains(r#""name":"b""#));
        // c comes at the end, with the edge to it and `done`.
        let answer = graph.finish("test", "all".to_owned(), None);
        assert_eq!(answer.streamed.nodes, 3);
        assert_eq!(answer.streamed.edges.len(), 3);
        let rest = lines(&answer.remaining_lines());
        assert_eq!(rest.len(), 3, "{rest:#?}");
        assert!(rest[0].contains(r#""name":"c""#) && rest[2].contains(r#""type":"done""#));
        // Streamed and remaining lines together are the answer's lines, each once.
        let mut whole: Vec<String> = answer
            .nodes
            .iter()
            .map(|n| ndjson_line("node", n))
            .chain(answer.edges.iter().map(|e| ndjson_line("edge", e)))
            .map(|l| String::from_utf8(l).expect("UTF-8").trim_end().to_owned())
            .collect();
        whole.push(rest[2].clone());
        let together: Vec<String> = early.into_iter().chain(rest).collect();
        assert_eq!(together.len(), whole.len());
        assert_eq!(
            together.iter().collect::<BTreeSet<_>>(),
            whole.iter().collect::<BTreeSet<_>>()
        );
    }

    #[test]
    fn a_streaming_builder_sends_nothing_below_max_depth() {
        let (mut graph, sent) = streaming(Some(1));
        let root = graph.node("root", "1", None);
        let a = graph.node("a", "1", None);
        let c = graph.node("c", "1", None);
        graph.edge(root, a, "", "normal");
        graph.edge(a, c, "", "normal");
        for id in [root, a, c] {
            graph.settled(id);
        }
        graph.flush();
        assert_eq!(
            lines(&sent.lock().expect("sent")).len(),
            3,
            "root, a, root→a"
        );
        let answer = graph.finish("test", "all".to_owned(), Some(1));
        assert_eq!(answer.nodes.len(), 2);
        assert_eq!(lines(&answer.remaining_lines()).len(), 1, "`done` alone");
    }

    #[test]
    fn a_builder_without_progress_sends_nothing_and_leaves_everything_to_the_end() {
        let mut graph = GraphBuilder::default();
        let root = graph.node("root", "1", None);
        let a = graph.node("a", "1", None);
        graph.edge(root, a, "", "normal");
        graph.settled(root);
        graph.settled(a);
        graph.flush();
        let answer = graph.finish("test", "all".to_owned(), None);
        assert_eq!(answer.streamed, super::Streamed::default());
        assert_eq!(lines(&answer.remaining_lines()).len(), 4);
    }

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
