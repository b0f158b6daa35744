//! The store's tables and their versions. Migrations run in one transaction at create and
//! open; a database whose schema is newer than this binary is refused. Only SQL that
//! CockroachDB and YugabyteDB also accept (`docs/operations.md`, "Running several nodes").

use tokio_postgres::Client;

use super::PgTarget;
use crate::storage::StorageError;

/// The schema version this binary writes and reads.
pub const SCHEMA_VERSION: i32 = 1;

/// The migrations, in order: after `MIGRATIONS[i]` the schema is version `i + 1`.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    // 1: the key-value table of every tree, the lease row, the schema row.
    "CREATE TABLE vault_schema (
         id INT4 PRIMARY KEY CHECK (id = 1),
         version INT4 NOT NULL,
         store_id BYTEA NOT NULL,
         created_at TIMESTAMPTZ NOT NULL DEFAULT now());
     CREATE TABLE vault_kv (
         tree INT2 NOT NULL,
         key BYTEA NOT NULL,
         value BYTEA NOT NULL,
         PRIMARY KEY (tree, key));
     CREATE TABLE vault_lease (
         id INT4 PRIMARY KEY CHECK (id = 1),
         holder TEXT NOT NULL,
         epoch INT8 NOT NULL,
         expires_at TIMESTAMPTZ NOT NULL);
     INSERT INTO vault_lease (id, holder, epoch, expires_at)
         VALUES (1, '', 0, TIMESTAMPTZ '1970-01-01 00:00:00+00');",
];

fn failed(operation: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StorageError {
    move |e| StorageError::backend(operation, e)
}

/// Creates the tables (`create`) or migrates them to [`SCHEMA_VERSION`]; returns the
/// store's id.
pub(super) async fn migrate(
    client: &Client,
    target: &PgTarget,
    create: bool,
) -> Result<[u8; 16], StorageError> {
    let exists = client
        .query_opt(
            "SELECT 1 FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = 'vault_schema'",
            &[],
        )
        .await
        .map_err(failed("looking for the vault's tables"))?
        .is_some();
    match (create, exists) {
        (true, true) => {
            return Err(target.unusable(
                "the database already holds a vault store: use `vault-cli status --store URL` to inspect it, or choose a new database",
            ))
        }
        (false, false) => {
            return Err(target.unusable(
                "the database holds no vault store: run `vault-cli init --store URL` first",
            ))
        }
        _ => {}
    }
    client
        .batch_execute("BEGIN")
        .await
        .map_err(failed("starting the schema transaction"))?;
    let result = async {
        let (from, store_id) = if create {
            let mut id = [0u8; 16];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
                .map_err(|_| target.unusable("the system random generator failed"))?;
            (0, id)
        } else {
            let row = client
                .query_one(
                    "SELECT version, store_id FROM vault_schema WHERE id = 1 FOR UPDATE",
                    &[],
                )
                .await
                .map_err(failed("reading the schema version"))?;
            let version: i32 = row.try_get(0).map_err(failed("reading the schema version"))?;
            let id: Vec<u8> = row.try_get(1).map_err(failed("reading the store id"))?;
            if version > SCHEMA_VERSION {
                return Err(target.unusable(format!(
                    "the database's schema is version {version}, newer than this binary's ({SCHEMA_VERSION}): run a vault release that knows version {version}"
                )));
            }
            let id = <[u8; 16]>::try_from(id.as_slice())
                .map_err(|_| target.unusable("the store id in vault_schema is damaged"))?;
            (usize::try_from(version).unwrap_or(0), id)
        };
        for migration in &MIGRATIONS[from..] {
            client
                .batch_execute(migration)
                .await
                .map_err(failed("migrating the schema"))?;
        }
        if create {
            client
                .execute(
                    "INSERT INTO vault_schema (id, version, store_id) VALUES (1, $1, $2)",
                    &[&SCHEMA_VERSION, &store_id.as_slice()],
                )
                .await
                .map_err(failed("recording the schema version"))?;
        } else if from < MIGRATIONS.len() {
            client
                .execute(
                    "UPDATE vault_schema SET version = $1 WHERE id = 1",
                    &[&SCHEMA_VERSION],
                )
                .await
                .map_err(failed("recording the schema version"))?;
        }
        Ok(store_id)
    }
    .await;
    match result {
        Ok(id) => {
            client
                .batch_execute("COMMIT")
                .await
                .map_err(failed("committing the schema"))?;
            Ok(id)
        }
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}
