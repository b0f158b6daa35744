//! The end-to-end flows with the store in PostgreSQL: a database of its own on the test
//! process's private cluster (`vault_core::storage::postgres::testing::PgCluster`, started
//! at first use), and `vault-server --dev --store URL`.

use tests::Vault;
use vault_core::storage::postgres::testing::PgCluster;

/// A new empty database on the shared cluster.
pub(crate) fn new_database() -> String {
    PgCluster::shared()
        .new_database()
        .expect("a database on the test PostgreSQL cluster")
}

/// `vault-server --dev` with its store in a new database.
pub(crate) fn start_dev_on_postgres() -> Vault {
    start_dev_on_postgres_with(&[])
}

/// Like [`start_dev_on_postgres`], with extra environment variables for the server.
pub(crate) fn start_dev_on_postgres_with(env: &[(&str, &str)]) -> Vault {
    let url = new_database();
    Vault::start_dev_with_args(&["--store", &url], env).expect("a dev vault on PostgreSQL")
}

/// Runs each flow `async fn NAME(v: Vault)` of the calling module as two tests, on a dev
/// vault with the sled store (`on_sled::NAME`) and on one with its store in PostgreSQL
/// (`on_postgres::NAME`).
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod on_sled {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name(tests::Vault::start_dev().expect("a dev vault")).await
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name(crate::pg::start_dev_on_postgres()).await
                }
            )*
        }
    };
}
pub(crate) use on_both_stores;
