//! The embedded metadata store: SQLite in WAL mode, through sqlx.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use super::MetadataError;

/// [`MetadataStore`] on an SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteMetadataStore {
    pool: SqlitePool,
}

impl SqliteMetadataStore {
    /// Opens (creating if needed) the database file and applies migrations.
    ///
    /// # Errors
    /// When the file cannot be opened or a migration fails.
    pub async fn open(path: &Path) -> Result<Self, MetadataError> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL is durable against process crashes; rows are re-creatable
            // from the upstream, blobs are fsynced separately.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }
}

super::sql::impl_sql_metadata_store!(SqliteMetadataStore, "sqlite", {
    async fn put_extraction(
        &self,
        extraction: &crate::protocols::dependencies::Extraction,
    ) -> Result<(), MetadataError> {
        // SQLite has no data-modifying CTE: the status row, then every dependency in
        // one statement (from a JSON array), in one transaction.
        let mut transaction = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO extractions (digest, repo, format, project, version, filename, status, reason, \
             extractor_version, attributes, dependency_count, extracted_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (digest) DO NOTHING",
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
        .bind(i64::try_from(extraction.dependencies.len()).unwrap_or(i64::MAX))
        .bind(to_unix_millis(SystemTime::now()))
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        if inserted == 1 && !extraction.dependencies.is_empty() {
            let rows =
                serde_json::to_string(&extraction.dependencies).expect("dependencies serialize");
            sqlx::query(
                "INSERT INTO dependencies (digest, position, name, requirement, kind, marker, optional, details) \
                 SELECT $1, CAST(key AS INTEGER), json_extract(value, '$.name'), json_extract(value, '$.requirement'), \
                 json_extract(value, '$.kind'), json_extract(value, '$.marker'), \
                 CAST(json_extract(value, '$.optional') AS INTEGER), COALESCE(json_extract(value, '$.details'), 'null') \
                 FROM json_each($2) WHERE true ON CONFLICT (digest, position) DO NOTHING",
            )
            .bind(&extraction.digest)
            .bind(rows)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    async fn touch_artifacts(
        &self,
        accesses: &[(String, SystemTime)],
    ) -> Result<(), MetadataError> {
        let mut transaction = self.pool.begin().await?;
        for (key, at) in accesses {
            sqlx::query(
                "UPDATE artifacts SET last_access = MAX(last_access, $2) WHERE cache_key = $1",
            )
            .bind(key)
            .bind(to_unix_millis(*at))
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }
});
