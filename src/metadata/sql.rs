//! The metadata queries both engines share. SQLite and PostgreSQL accept the same SQL
//! here (`$n` parameters, `ON CONFLICT`, `CAST(... AS BIGINT)`); only opening the
//! pool and the batched access-time update differ, and each store supplies those.
//! A macro rather than generic code: sqlx's row and argument types differ per
//! engine, and the generated `impl` is plain code the compiler checks per engine.

/// `u64` from a stored `BIGINT` that is never negative.
pub(super) fn non_negative(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Implements `MetadataStore` for a store with a `pool` field, adding `$specific`
/// (the engine's own `touch_artifacts`) and `kind`.
macro_rules! impl_sql_metadata_store {
    ($store:ty, $kind:literal, { $($specific:tt)* }) => {
        const _: () = {
            use ::std::time::SystemTime;

            use ::bytes::Bytes;
            use ::sqlx::Row;

            use $crate::clock::{from_unix_millis, to_unix_millis};
            use $crate::http_cache::{Lifetimes, Validators};
            use $crate::metadata::sql::non_negative;
            use $crate::metadata::{ApiTokenRecord, ArtifactRecord, BlobUsage, IndexRecord, MetadataError, MetadataStore, ResolutionRecord};
            use $crate::storage::Digest;

            #[::async_trait::async_trait]
            impl MetadataStore for $store {

    fn pool_status(&self) -> Option<$crate::metadata::PoolStatus> {
        let open = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        Some($crate::metadata::PoolStatus {
            open,
            idle,
            in_use: open.saturating_sub(idle),
            max: self.pool.options().get_max_connections(),
        })
    }


    async fn index_entry(&self, key: &str) -> Result<Option<IndexRecord>, MetadataError> {
        let row = sqlx::query(
            "SELECT CAST(format_version AS BIGINT) AS format_version, CAST(found AS BIGINT) AS found, body, upstream_etag, upstream_last_modified, \
             stored_at, fresh_until, stale_until FROM index_entries WHERE cache_key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let body: Vec<u8> = row.try_get("body")?;
        Ok(Some(IndexRecord {
            key: key.to_owned(),
            format_version: u32::try_from(row.try_get::<i64, _>("format_version")?).unwrap_or(0),
            found: row.try_get::<i64, _>("found")? != 0,
            body: Bytes::from(body),
            validators: Validators {
                etag: row.try_get("upstream_etag")?,
                last_modified: row.try_get("upstream_last_modified")?,
            },
            stored_at: from_unix_millis(row.try_get("stored_at")?),
            lifetimes: Lifetimes {
                fresh_until: from_unix_millis(row.try_get("fresh_until")?),
                stale_until: from_unix_millis(row.try_get("stale_until")?),
            },
        }))
    }

    async fn api_token(&self, hash: &str) -> Result<Option<ApiTokenRecord>, MetadataError> {
        let row = sqlx::query(
            "SELECT user_name, created_at, expires_at FROM api_tokens WHERE token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(ApiTokenRecord {
            hash: hash.to_owned(),
            user: row.try_get("user_name")?,
            created_at: from_unix_millis(row.try_get("created_at")?),
            expires_at: row.try_get::<Option<i64>, _>("expires_at")?.map(from_unix_millis),
        }))
    }

    async fn resolution(&self, key: &str) -> Result<Option<ResolutionRecord>, MetadataError> {
        let row = sqlx::query(
            "SELECT body, documents, stored_at FROM resolutions WHERE resolution_key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let body: Vec<u8> = row.try_get("body")?;
        Ok(Some(ResolutionRecord {
            key: key.to_owned(),
            body: Bytes::from(body),
            documents: row.try_get("documents")?,
            stored_at: from_unix_millis(row.try_get("stored_at")?),
        }))
    }

    async fn put_resolution(&self, record: &ResolutionRecord) -> Result<(), MetadataError> {
        sqlx::query(
            "INSERT INTO resolutions (resolution_key, body, documents, stored_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (resolution_key) DO UPDATE SET body = excluded.body, \
             documents = excluded.documents, stored_at = excluded.stored_at",
        )
        .bind(&record.key)
        .bind(record.body.as_ref())
        .bind(&record.documents)
        .bind(to_unix_millis(record.stored_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_resolutions_before(&self, before: SystemTime) -> Result<u64, MetadataError> {
        Ok(sqlx::query("DELETE FROM resolutions WHERE stored_at < $1")
            .bind(to_unix_millis(before))
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn put_api_token(&self, record: &ApiTokenRecord) -> Result<(), MetadataError> {
        sqlx::query(
            "INSERT INTO api_tokens (token_hash, user_name, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&record.hash)
        .bind(&record.user)
        .bind(to_unix_millis(record.created_at))
        .bind(record.expires_at.map(to_unix_millis))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn put_index_entry(&self, record: &IndexRecord) -> Result<(), MetadataError> {
        sqlx::query(
            "INSERT INTO index_entries (cache_key, format_version, found, body, upstream_etag, \
             upstream_last_modified, stored_at, fresh_until, stale_until) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (cache_key) DO UPDATE SET format_version = excluded.format_version, \
             found = excluded.found, body = excluded.body, upstream_etag = excluded.upstream_etag, \
             upstream_last_modified = excluded.upstream_last_modified, stored_at = excluded.stored_at, \
             fresh_until = excluded.fresh_until, stale_until = excluded.stale_until",
        )
        .bind(&record.key)
        .bind(i32::try_from(record.format_version).unwrap_or(i32::MAX))
        .bind(i32::from(record.found))
        .bind(record.body.as_ref())
        .bind(&record.validators.etag)
        .bind(&record.validators.last_modified)
        .bind(to_unix_millis(record.stored_at))
        .bind(to_unix_millis(record.lifetimes.fresh_until))
        .bind(to_unix_millis(record.lifetimes.stale_until))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn renew_index_entry(
        &self,
        key: &str,
        stored_at: SystemTime,
        lifetimes: Lifetimes,
        validators: &Validators,
    ) -> Result<(), MetadataError> {
        sqlx::query(
            "UPDATE index_entries SET stored_at = $2, fresh_until = $3, stale_until = $4, \
             upstream_etag = COALESCE($5, upstream_etag), \
             upstream_last_modified = COALESCE($6, upstream_last_modified) WHERE cache_key = $1",
        )
        .bind(key)
        .bind(to_unix_millis(stored_at))
        .bind(to_unix_millis(lifetimes.fresh_until))
        .bind(to_unix_millis(lifetimes.stale_until))
        .bind(&validators.etag)
        .bind(&validators.last_modified)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn artifact(&self, key: &str) -> Result<Option<ArtifactRecord>, MetadataError> {
        let row = sqlx::query(
            "SELECT repo, digest, size, content_type, stored_at FROM artifacts WHERE cache_key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let digest_hex: String = row.try_get("digest")?;
        let digest = Digest::from_hex(&digest_hex).ok_or_else(|| MetadataError::Corrupt {
            key: key.to_owned(),
            reason: format!("digest `{digest_hex}` is not a sha256"),
        })?;
        Ok(Some(ArtifactRecord {
            key: key.to_owned(),
            repo: row.try_get("repo")?,
            digest,
            size: non_negative(row.try_get("size")?),
            content_type: row.try_get("content_type")?,
            stored_at: from_unix_millis(row.try_get("stored_at")?),
        }))
    }

    async fn put_artifact(&self, record: &ArtifactRecord) -> Result<(), MetadataError> {
        let stored_at = to_unix_millis(record.stored_at);
        sqlx::query(
            "INSERT INTO artifacts (cache_key, repo, digest, size, content_type, stored_at, last_access) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (cache_key) DO NOTHING",
        )
        .bind(&record.key)
        .bind(&record.repo)
        .bind(record.digest.as_str())
        .bind(i64::try_from(record.size).unwrap_or(i64::MAX))
        .bind(&record.content_type)
        .bind(stored_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_artifact(&self, key: &str) -> Result<(), MetadataError> {
        sqlx::query("DELETE FROM artifacts WHERE cache_key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_index_entry(&self, key: &str) -> Result<u64, MetadataError> {
        let result = sqlx::query("DELETE FROM index_entries WHERE cache_key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    async fn delete_index_entries(&self, prefix: &str) -> Result<u64, MetadataError> {
        // substr rather than LIKE: keys may contain `%` or `_`.
        let result =
            sqlx::query("DELETE FROM index_entries WHERE substr(cache_key, 1, length($1)) = $1")
                .bind(prefix)
                .execute(&self.pool)
                .await?;
        Ok(result.rows_affected())
    }

    async fn stored_bytes(&self) -> Result<u64, MetadataError> {
        let total: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM (SELECT MAX(size) AS size FROM artifacts GROUP BY digest) AS blobs",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(non_negative(total))
    }

    async fn stored_blobs(&self) -> Result<u64, MetadataError> {
        let count: i64 = sqlx::query_scalar("SELECT CAST(COUNT(DISTINCT digest) AS BIGINT) FROM artifacts")
            .fetch_one(&self.pool)
            .await?;
        Ok(non_negative(count))
    }

    async fn least_recently_used(&self, limit: u32) -> Result<Vec<BlobUsage>, MetadataError> {
        let rows = sqlx::query(
            "SELECT digest, MAX(size) AS size, MAX(last_access) AS last_access FROM artifacts \
             GROUP BY digest ORDER BY last_access ASC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let hex: String = row.try_get("digest")?;
                let digest = Digest::from_hex(&hex).ok_or_else(|| MetadataError::Corrupt {
                    key: hex.clone(),
                    reason: "digest is not a sha256".to_owned(),
                })?;
                Ok(BlobUsage {
                    digest,
                    size: non_negative(row.try_get("size")?),
                    last_access: from_unix_millis(row.try_get("last_access")?),
                })
            })
            .collect()
    }

    async fn referenced_digests(&self) -> Result<Vec<Digest>, MetadataError> {
        let hexes: Vec<String> = sqlx::query_scalar("SELECT DISTINCT digest FROM artifacts")
            .fetch_all(&self.pool)
            .await?;
        Ok(hexes
            .iter()
            .filter_map(|hex| Digest::from_hex(hex))
            .collect())
    }

    async fn delete_artifacts_with_digest(&self, digest: &Digest) -> Result<u64, MetadataError> {
        let result = sqlx::query("DELETE FROM artifacts WHERE digest = $1")
            .bind(digest.as_str())
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    async fn check(&self) -> Result<(), MetadataError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn has_extraction(&self, digest: &str) -> Result<bool, MetadataError> {
        Ok(sqlx::query("SELECT 1 FROM extractions WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    async fn extractions_of(
        &self,
        repo: &str,
        project: &str,
        version: &str,
    ) -> Result<Vec<$crate::protocols::dependencies::Extraction>, MetadataError> {
        use $crate::protocols::dependencies::{Dependency, Extraction, ExtractionStatus};
        let rows = sqlx::query(
            "SELECT digest, format, filename, status, reason, CAST(extractor_version AS BIGINT) AS extractor_version, \
             attributes, CAST(dependency_count AS BIGINT) AS dependency_count \
             FROM extractions WHERE repo = $1 AND project = $2 AND version = $3 ORDER BY filename",
        )
        .bind(repo)
        .bind(project)
        .bind(version)
        .fetch_all(&self.pool)
        .await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in rows {
            let digest: String = row.try_get("digest")?;
            let count: i64 = row.try_get("dependency_count")?;
            let dependencies = sqlx::query(
                "SELECT name, requirement, kind, marker, CAST(optional AS BIGINT) AS optional, details \
                 FROM dependencies WHERE digest = $1 AND position < $2 ORDER BY position",
            )
            .bind(&digest)
            .bind(count)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|dep| {
                let details: String = dep.try_get("details")?;
                Ok(Dependency {
                    name: dep.try_get("name")?,
                    requirement: dep.try_get("requirement")?,
                    kind: dep.try_get("kind")?,
                    marker: dep.try_get("marker")?,
                    optional: dep.try_get::<i64, _>("optional")? != 0,
                    details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
            let attributes: String = row.try_get("attributes")?;
            found.push(Extraction {
                digest,
                repo: repo.to_owned(),
                format: row.try_get("format")?,
                project: project.to_owned(),
                version: version.to_owned(),
                filename: row.try_get("filename")?,
                status: ExtractionStatus::parse(&row.try_get::<String, _>("status")?),
                reason: row.try_get("reason")?,
                extractor_version: u32::try_from(row.try_get::<i64, _>("extractor_version")?).unwrap_or(0),
                attributes: serde_json::from_str(&attributes).unwrap_or(serde_json::Value::Null),
                dependencies,
            });
        }
        Ok(found)
    }

                fn kind(&self) -> &'static str {
                    $kind
                }

                $($specific)*
            }
        };
    };
}

pub(super) use impl_sql_metadata_store;
