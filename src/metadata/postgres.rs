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
