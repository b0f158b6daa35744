//! `vault-server`: the consent vault's HTTPS server.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("vault-server: not built yet")
}
