//! The embedded migration: the `saga` schema, its tables and indexes,
//! created if they are not there.

use sqlx::{Executor as _, PgPool};

use crate::{StoreError, StoreErrorKind};

/// The schema version this crate writes, in `saga.schema_version`.
pub(crate) const SCHEMA_VERSION: i32 = 1;

/// The key of the transaction-level advisory lock that serialises
/// concurrent migrators (the bytes of "sagamig1").
const MIGRATION_LOCK: i64 = 0x7361_6761_6d69_6731;

/// Every statement is idempotent: running it on a migrated database
/// changes nothing.
const SCHEMA: &str = r"
CREATE SCHEMA IF NOT EXISTS saga;

CREATE TABLE IF NOT EXISTS saga.schema_version (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    version integer NOT NULL
);

CREATE TABLE IF NOT EXISTS saga.sagas (
    id uuid PRIMARY KEY,
    definition text NOT NULL DEFAULT '',
    version bigint NOT NULL DEFAULT 0 CHECK (version >= 0),
    state text NOT NULL DEFAULT 'forward' CHECK (state IN
        ('forward', 'unwinding', 'committed', 'compensated', 'stuck', 'abandoned')),
    owner text,
    epoch bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    lease_expires_at timestamptz,
    recoveries bigint NOT NULL DEFAULT 0,
    next_seq bigint NOT NULL DEFAULT 0 CHECK (next_seq >= 0),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_error text,
    quarantine text
);

CREATE INDEX IF NOT EXISTS sagas_claimable ON saga.sagas (lease_expires_at)
    WHERE state IN ('forward', 'unwinding') AND quarantine IS NULL;

CREATE INDEX IF NOT EXISTS sagas_by_state ON saga.sagas (state, id);

CREATE TABLE IF NOT EXISTS saga.records (
    saga_id uuid NOT NULL REFERENCES saga.sagas (id) ON DELETE CASCADE,
    seq bigint NOT NULL CHECK (seq >= 0),
    body bytea NOT NULL,
    checksum bigint NOT NULL,
    written_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (saga_id, seq)
);
";

/// Creates what is missing, under the advisory lock, and checks the
/// version: a database written by a newer version is refused.
pub(crate) async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let postgres = |what: &str, error| StoreError::postgres(format!("migration: {what}"), error);
    let mut transaction = pool
        .begin()
        .await
        .map_err(|e| postgres("cannot begin", e))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *transaction)
        .await
        .map_err(|e| postgres("cannot take the migration lock", e))?;
    // A newer version's tables are left as they are: checked first.
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('saga.schema_version') IS NOT NULL")
        .fetch_one(&mut *transaction)
        .await
        .map_err(|e| postgres("cannot look for the schema", e))?;
    if exists {
        let version: Option<i32> = sqlx::query_scalar("SELECT version FROM saga.schema_version")
            .fetch_optional(&mut *transaction)
            .await
            .map_err(|e| postgres("cannot read the schema version", e))?;
        if let Some(version) = version.filter(|&version| version != SCHEMA_VERSION) {
            // Let go of the lock now, not when the pool gets round to it.
            let _ = transaction.rollback().await;
            return Err(StoreError::new(
                StoreErrorKind::Schema,
                format!(
                    "the database holds saga schema version {version}, \
                     this store reads and writes version {SCHEMA_VERSION}"
                ),
            ));
        }
    }
    // A plain string runs as a simple query: every statement in it.
    (&mut *transaction)
        .execute(SCHEMA)
        .await
        .map_err(|e| postgres("cannot create the tables", e))?;
    sqlx::query(
        "INSERT INTO saga.schema_version (version) VALUES ($1) ON CONFLICT (one) DO NOTHING",
    )
    .bind(SCHEMA_VERSION)
    .execute(&mut *transaction)
    .await
    .map_err(|e| postgres("cannot write the schema version", e))?;
    transaction
        .commit()
        .await
        .map_err(|e| postgres("cannot commit", e))
}
