//! The shared metadata store: PostgreSQL through sqlx, with the same queries as the
//! embedded store, except where PostgreSQL does better in one statement (batched
//! access-time updates with `UNNEST`).

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use super::MetadataError;

/// [`MetadataStore`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresMetadataStore {
    pool: PgPool,
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    pub url: String,
    /// Connections kept open.
    pub pool_size: u32,
    /// Extra connections under load.
    pub pool_overflow: u32,
    /// Wait for a connection before failing.
    pub acquire_timeout: Duration,
}

impl PostgresMetadataStore {
    /// Connects and applies migrations (each replica may; sqlx serializes them with an
    /// advisory lock).
    ///
    /// # Errors
    /// When the server cannot be reached or a migration fails.
    pub async fn open(options: &PostgresOptions) -> Result<Self, MetadataError> {
        let connect = PgConnectOptions::from_str(&options.url)?;
        let pool = PgPoolOptions::new()
            .min_connections(options.pool_size.min(4))
            .max_connections(options.pool_size + options.pool_overflow)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }
}

super::sql::impl_sql_metadata_store!(PostgresMetadataStore, "postgres", {
    async fn put_extraction(
        &self,
        extraction: &crate::protocols::dependencies::Extraction,
    ) -> Result<(), MetadataError> {
        // One statement: the status row, and every dependency from arrays
        // (`UNNEST`), only when the status row is new.
        let dependencies = &extraction.dependencies;
        let positions: Vec<i64> = (0..dependencies.len())
            .map(|p| i64::try_from(p).unwrap_or(i64::MAX))
            .collect();
        let names: Vec<&str> = dependencies.iter().map(|d| d.name.as_str()).collect();
        let requirements: Vec<&str> = dependencies
            .iter()
            .map(|d| d.requirement.as_str())
            .collect();
        let kinds: Vec<&str> = dependencies.iter().map(|d| d.kind.as_str()).collect();
        let markers: Vec<Option<&str>> = dependencies.iter().map(|d| d.marker.as_deref()).collect();
        let optional: Vec<i64> = dependencies.iter().map(|d| i64::from(d.optional)).collect();
        let details: Vec<String> = dependencies.iter().map(|d| d.details.to_string()).collect();
        sqlx::query(
            "WITH status AS ( \
                INSERT INTO extractions (digest, repo, format, project, version, filename, status, reason, \
                extractor_version, attributes, dependency_count, extracted_at) \
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                ON CONFLICT (digest) DO NOTHING RETURNING digest) \
             INSERT INTO dependencies (digest, position, name, requirement, kind, marker, optional, details) \
             SELECT status.digest, d.position, d.name, d.requirement, d.kind, d.marker, d.optional, d.details \
             FROM status, UNNEST($13::BIGINT[], $14::TEXT[], $15::TEXT[], $16::TEXT[], $17::TEXT[], $18::BIGINT[], $19::TEXT[]) \
                AS d(position, name, requirement, kind, marker, optional, details) \
             ON CONFLICT (digest, position) DO NOTHING",
        )
        .bind(&extraction.digest)
        .bind(&extraction.repo)
        .bind(&extraction.format)
        .bind(&extraction.project)
        .bind(&extraction.version)
        .bind(&extraction.filename)
        .bind(extraction.status.as_str())
        .bind(&extraction.reason)
        .bind(i64::from(extraction.extractor_version))
        .bind(extraction.attributes.to_string())
        .bind(i64::try_from(dependencies.len()).unwrap_or(i64::MAX))
        .bind(to_unix_millis(SystemTime::now()))
        .bind(&positions)
        .bind(&names)
        .bind(&requirements)
        .bind(&kinds)
        .bind(&markers)
        .bind(&optional)
        .bind(&details)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn touch_artifacts(
        &self,
        accesses: &[(String, SystemTime)],
    ) -> Result<(), MetadataError> {
        // One statement for the whole batch.
        let keys: Vec<&str> = accesses.iter().map(|(key, _)| key.as_str()).collect();
        let times: Vec<i64> = accesses.iter().map(|(_, at)| to_unix_millis(*at)).collect();
        sqlx::query(
            "UPDATE artifacts SET last_access = GREATEST(artifacts.last_access, batch.at) \
             FROM UNNEST($1::TEXT[], $2::BIGINT[]) AS batch(cache_key, at) \
             WHERE artifacts.cache_key = batch.cache_key",
        )
        .bind(&keys)
        .bind(&times)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
});
