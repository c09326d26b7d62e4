//! What `granary warm` asks a repository for, read from a lockfile or a pinned
//! requirements file: the paths (below the repository's mount point) a real client
//! would fetch for it. A fetched document can name more (a PyPI page names the files
//! of the pinned version), through [`WarmFetch::expand`]. Which files a format reads:
//! [`super::warm_plan`].

use std::fmt;
use std::sync::Arc;

/// Reads a fetched document and names what else to fetch.
pub type Expand = Arc<dyn Fn(&[u8]) -> Result<Vec<WarmFetch>, String> + Send + Sync>;

/// One GET below the repository's mount point.
#[derive(Clone)]
pub struct WarmFetch {
    /// Percent-encoded path below the mount point, e.g. `simple/demo/`.
    pub path: String,
    /// The `Accept` header a client sends for it.
    pub accept: Option<&'static str>,
    /// What the body names besides (for index documents).
    pub expand: Option<Expand>,
}

impl WarmFetch {
    #[must_use]
    pub fn new(path: String) -> Self {
        Self {
            path,
            accept: None,
            expand: None,
        }
    }

    #[must_use]
    pub fn accepting(mut self, accept: &'static str) -> Self {
        self.accept = Some(accept);
        self
    }

    #[must_use]
    pub fn then(mut self, expand: Expand) -> Self {
        self.expand = Some(expand);
        self
    }
}

impl fmt::Debug for WarmFetch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WarmFetch")
            .field("path", &self.path)
            .field("accept", &self.accept)
            .field("expands", &self.expand.is_some())
            .finish()
    }
}
