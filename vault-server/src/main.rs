//! `vault-server`: the consent vault's HTTPS server.

mod error;
mod serve;
mod tls;

fn main() -> anyhow::Result<()> {
    tls::install_provider();
    anyhow::bail!("vault-server: not built yet")
}
