//! Badges drawn from granary's own cached metadata (`/-/badge/REPO/PROJECT/KIND.svg`
//! and `.json`).
//!
//! | part | what |
//! |---|---|
//! | [`facts`] | what a project's badges say: one lookup per project and stage, through the engine, kept per kind |
//! | [`image`] | drawing (shields geometry and font metrics) and the content-keyed image cache |
//! | [`query`] | `style`, `label`, colours and `cacheSeconds`, checked |
//!
//! Which badges a format draws, and the facts behind them, come from its protocol
//! ([`crate::protocols::Protocol::badge_facts`]); nothing here knows an ecosystem.

pub mod facts;
pub mod image;
pub mod query;

use std::sync::Arc;

use bytes::Bytes;

use crate::clock::Clock;
use crate::engine::redis::RedisTier;
use crate::engine::CacheEngine;
use crate::metrics::Metrics;
use crate::protocols::Protocol;
use crate::storage::BlobStore;
use facts::{Answer, FactCache, Lookup};
use image::{Drawing, ImageCache, ImageFormat};
use query::{capped, BadgeQuery, MAX_CACHE_SECONDS};

/// Longest message drawn, in characters (longer facts are cut with an ellipsis).
const MAX_MESSAGE: usize = 64;
/// The most an error badge ("not found", "unavailable") or a stale answer may be
/// cached anywhere.
const ERROR_MAX_AGE: u64 = 60;

/// The badge service: the facts cache and the image cache.
#[derive(Debug, Clone)]
pub struct BadgeService {
    facts: FactCache,
    images: ImageCache,
}

/// One badge request, after the caller was allowed to read the repository.
#[derive(Debug)]
pub struct BadgeRequest<'a> {
    pub protocol: &'a Arc<dyn Protocol>,
    pub engine: &'a CacheEngine,
    pub blobs: &'a Arc<dyn BlobStore>,
    pub project: &'a str,
    /// The kind, without its extension.
    pub kind: &'a str,
    pub format: ImageFormat,
    pub query: Option<&'a str>,
    pub if_none_match: Option<&'a str>,
}

/// A badge to send.
#[derive(Debug)]
pub struct Badge {
    /// The caller's `If-None-Match` matched: send `304` with no body.
    pub not_modified: bool,
    pub body: Bytes,
    pub content_type: &'static str,
    /// The image's content key, quoted.
    pub etag: String,
    /// Seconds it may be cached for (`max-age` and `s-maxage`).
    pub max_age: u64,
    /// Drawn from facts past their freshness (a refresh is running).
    pub stale: bool,
}

/// Why no badge is drawn.
#[derive(Debug)]
pub enum BadgeError {
    BadRequest(String),
    NotFound(String),
}

impl BadgeService {
    #[must_use]
    pub fn new(redis: Option<Arc<RedisTier>>, clock: Arc<dyn Clock>, metrics: Metrics) -> Self {
        Self {
            facts: FactCache::new(redis, clock, metrics.clone()),
            images: ImageCache::new(metrics),
        }
    }

    /// Draws one badge.
    ///
    /// # Errors
    /// A refused query, an unknown kind or an invalid project name. An unknown
    /// project or an unreachable upstream is a badge ("not found", "unavailable").
    pub async fn badge(&self, request: BadgeRequest<'_>) -> Result<Badge, BadgeError> {
        let query = BadgeQuery::parse(request.query).map_err(BadgeError::BadRequest)?;
        let kinds = request.protocol.badge_kinds();
        let name = &request.protocol.settings().name;
        let kind = kinds
            .iter()
            .find(|k| k.name == request.kind)
            .ok_or_else(|| {
                BadgeError::NotFound(if kinds.is_empty() {
                    format!("repository `{name}` draws no badges")
                } else {
                    format!(
                        "no badge `{}` in repository `{name}`; it draws: {}",
                        request.kind,
                        kinds.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
                    )
                })
            })?;
        let project_key = request
            .protocol
            .project_index_key(request.project)
            .map_err(|e| BadgeError::BadRequest(e.to_string()))?;
        let answer = self
            .facts
            .fact(name, project_key.as_str(), kind, || Lookup {
                protocol: Arc::clone(request.protocol),
                engine: request.engine.clone(),
                blobs: Arc::clone(request.blobs),
                project: request.project.to_owned(),
            })
            .await
            .map_err(BadgeError::BadRequest)?;
        let longest = kind
            .ttl
            .as_secs()
            .max(query.cache_seconds.unwrap_or(0))
            .min(MAX_CACHE_SECONDS);
        let (message, color, is_error, max_age, stale) = match answer {
            Answer::Fact { fact, stale } => (
                capped(&fact.message, MAX_MESSAGE),
                query.color.clone().unwrap_or(fact.color),
                false,
                if stale {
                    ERROR_MAX_AGE.min(longest)
                } else {
                    longest
                },
                stale,
            ),
            Answer::NotFound(_) => (
                "not found".to_owned(),
                "red".to_owned(),
                true,
                ERROR_MAX_AGE,
                false,
            ),
            Answer::Unavailable(_) => (
                "unavailable".to_owned(),
                "lightgrey".to_owned(),
                true,
                ERROR_MAX_AGE,
                false,
            ),
        };
        let drawing = Drawing {
            format: request.format,
            style: query.style.unwrap_or("flat"),
            label: query.label.unwrap_or_else(|| kind.label.to_owned()),
            message,
            color,
            label_color: query.label_color,
            is_error,
        };
        let key = drawing.content_key();
        let etag = format!("\"{key}\"");
        let not_modified = request.if_none_match.is_some_and(|header| {
            header
                .split(',')
                .map(|tag| tag.trim().trim_start_matches("W/"))
                .any(|tag| tag == etag || tag == "*")
        });
        let body = if not_modified {
            Bytes::new()
        } else {
            self.images.get_or_render(&key, &drawing)
        };
        Ok(Badge {
            not_modified,
            body,
            content_type: request.format.content_type(),
            etag,
            max_age,
            stale,
        })
    }
}
