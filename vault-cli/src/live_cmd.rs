//! Live verbs: they talk to the running server over mutual TLS with the operator
//! certificate (sled admits one process per data directory, so a running vault is only
//! changed through its server): agencies, tokens, erasure and backup.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::{json, Value};
use vault_core::policies::AgencyId;

use crate::client::{segment, Client, Conn};
use crate::exit::{self, Exit};
use crate::files::{self, Mode};

/// `vault-cli agency ...`.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum AgencyCmd {
    /// Enrol an agency of the policy registry: the vault issues its client certificate;
    /// writes <OUT>/<id>.pem and <OUT>/<id>.key (mode 0600), and <OUT>/ca.pem if missing.
    Enrol {
        /// The agency id (as in the policy files' agency registry).
        id: String,
        /// The directory to write the certificate and key to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Days the certificate is valid (1-825).
        #[arg(long, default_value_t = 365)]
        days: u32,
        #[command(flatten)]
        conn: Conn,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// List enrolled agencies, their certificates and revocations.
    List {
        #[command(flatten)]
        conn: Conn,
        /// Print the server's answer as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// The agency's webhook endpoint: where the vault posts its consent events (signed
    /// Standard Webhooks; docs/notifications.md).
    Webhook {
        #[command(subcommand)]
        cmd: crate::notify_cmd::AgencyWebhookCmd,
    },
    /// Revoke an agency (every certificate of it), or with --fingerprint one certificate
    /// only:
    /// refused at once, also on open connections, and for good (a new enrolment issues a
    /// new certificate and revokes nothing back).
    Revoke {
        /// The agency id.
        #[arg(
            required_unless_present = "fingerprint",
            conflicts_with = "fingerprint"
        )]
        id: Option<String>,
        /// Revoke only the certificate with this SHA-256 fingerprint (as `agency list`
        /// shows it); the agency's other certificates stay valid (`--cert` names the
        /// operator's own certificate file).
        #[arg(long, value_name = "SHA256")]
        fingerprint: Option<String>,
        #[command(flatten)]
        conn: Conn,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

fn agency_id(id: &str) -> anyhow::Result<AgencyId> {
    AgencyId::new(id).map_err(|e| Exit::error(exit::REJECTED, e.to_string()))
}

fn str_of<'a>(v: &'a Value, key: &str) -> anyhow::Result<&'a str> {
    v[key]
        .as_str()
        .with_context(|| format!("the server's answer has no `{key}`"))
}

/// Runs an `agency` subcommand.
pub(crate) fn agency(cmd: AgencyCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        AgencyCmd::Enrol {
            id,
            out,
            days,
            conn,
            json,
        } => {
            let id = agency_id(&id)?;
            let cert_path = out.join(format!("{id}.pem"));
            let key_path = out.join(format!("{id}.key"));
            files::must_not_exist(&cert_path)?;
            files::must_not_exist(&key_path)?;
            let client = Client::operator(&conn)?;
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let v = client.post_json(
                "/v1/admin/agencies",
                &json!({"agency": id.as_str(), "valid_days": days}),
                "enrolment",
            )?;
            let key = zeroize::Zeroizing::new(str_of(&v, "private_key_pem")?.to_owned());
            files::write_new(&key_path, key.as_bytes(), Mode::Secret)?;
            files::write_new(
                &cert_path,
                str_of(&v, "certificate_pem")?.as_bytes(),
                Mode::Public,
            )?;
            let ca_path = out.join("ca.pem");
            let wrote_ca = if ca_path.exists() {
                false
            } else {
                files::write_new(
                    &ca_path,
                    str_of(&v, "ca_certificate_pem")?.as_bytes(),
                    Mode::Public,
                )?;
                true
            };
            let fp = str_of(&v, "fingerprint")?;
            if json {
                println!(
                    "{}",
                    json!({"ok": true, "agency": id.as_str(), "certificate": cert_path, "key": key_path,
                           "ca_certificate": wrote_ca.then_some(&ca_path), "fingerprint": fp,
                           "audit_index": v["audit_index"]})
                );
            } else {
                println!(
                    "enrolled {id}: certificate {} (SHA-256 {fp}), key {} (mode 0600){}; hand \
                     them to the agency over a secure channel",
                    cert_path.display(),
                    key_path.display(),
                    if wrote_ca {
                        format!(", CA certificate {}", ca_path.display())
                    } else {
                        String::new()
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AgencyCmd::List { conn, json } => {
            let v = Client::operator(&conn)?.get_json("/v1/admin/agencies", "agency list")?;
            if json {
                println!("{v}");
                return Ok(ExitCode::SUCCESS);
            }
            let list = v["agencies"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no agency is enrolled: `vault-cli agency enrol <id> --out DIR`");
            }
            for a in list {
                let state = match a["revoked_at"].as_str() {
                    Some(t) => format!("REVOKED at {t}"),
                    None => "active".to_owned(),
                };
                println!("{}\t{state}", a["agency"].as_str().unwrap_or("?"));
                for c in a["certificates"].as_array().into_iter().flatten() {
                    let state = match (c["state"].as_str(), c["revoked_at"].as_str()) {
                        (Some("revoked"), Some(t)) => format!("REVOKED at {t}"),
                        (Some("expired"), _) => "EXPIRED".to_owned(),
                        (Some(s), _) => s.to_owned(),
                        (None, _) => "?".to_owned(),
                    };
                    println!(
                        "  certificate {} issued {} valid until {}\t{state}",
                        c["fingerprint"].as_str().unwrap_or("?"),
                        c["issued_at"].as_str().unwrap_or("?"),
                        c["not_after"].as_str().unwrap_or("?")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AgencyCmd::Webhook { cmd } => {
            let (id, step) = cmd.split();
            let id = agency_id(&id)?;
            crate::notify_cmd::endpoint(
                step,
                &format!("/v1/admin/agencies/{}/webhook", segment(id.as_str())),
                &format!("agency {id}"),
            )
        }
        AgencyCmd::Revoke {
            fingerprint: Some(fp),
            conn,
            json,
            ..
        } => {
            let v = Client::operator(&conn)?.post_json(
                &format!("/v1/admin/certificates/{}/revoke", segment(&fp)),
                &json!({}),
                "certificate revocation",
            )?;
            let agency = str_of(&v, "agency")?;
            if json {
                println!(
                    "{}",
                    json!({"ok": true, "agency": agency, "fingerprint": fp, "audit_index": v["audit_index"]})
                );
            } else {
                println!(
                    "revoked certificate {fp} of {agency}: refused from now on; the agency's \
                     other certificates stay valid (audit entry {})",
                    v["audit_index"]
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AgencyCmd::Revoke { id, conn, json, .. } => {
            let id = agency_id(id.as_deref().unwrap_or_default())?;
            let v = Client::operator(&conn)?.post_json(
                &format!("/v1/admin/agencies/{}/revoke", segment(id.as_str())),
                &json!({}),
                "revocation",
            )?;
            if json {
                println!(
                    "{}",
                    json!({"ok": true, "agency": id.as_str(), "audit_index": v["audit_index"]})
                );
            } else {
                println!(
                    "revoked {id}: its certificates are refused from now on (audit entry {})",
                    v["audit_index"]
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Issues a bearer token (`role` citizen or auditor) and prints it once.
pub(crate) fn token(conn: &Conn, body: Value, who: &str, json: bool) -> anyhow::Result<ExitCode> {
    let v = Client::operator(conn)?.post_json("/v1/admin/tokens", &body, "token issue")?;
    let token = zeroize::Zeroizing::new(str_of(&v, "token")?.to_owned());
    if json {
        println!(
            "{}",
            json!({"ok": true, "id": v["id"], "token": token.as_str(), "expires_at": v["expires_at"], "audit_index": v["audit_index"]})
        );
    } else {
        println!("{}", token.as_str());
        eprintln!(
            "token for {who} (id {}, expires {}): shown once, hand it over a secure channel; \
             revoke it with `vault-cli token revoke {}`",
            v["id"].as_str().unwrap_or("?"),
            v["expires_at"].as_str().unwrap_or("?"),
            v["id"].as_str().unwrap_or("?"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `vault-cli token revoke <id>`.
pub(crate) fn revoke_token(conn: &Conn, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let v = Client::operator(conn)?.post_json(
        &format!("/v1/admin/tokens/{}/revoke", segment(id)),
        &json!({}),
        "token revocation",
    )?;
    if json {
        println!(
            "{}",
            json!({"ok": true, "revoked": v["revoked"], "audit_index": v["audit_index"]})
        );
    } else {
        println!(
            "revoked {} token(s) (audit entry {})",
            v["revoked"], v["audit_index"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `vault-cli erase <citizen> --yes`.
pub(crate) fn erase(conn: &Conn, citizen: &str, yes: bool, json: bool) -> anyhow::Result<ExitCode> {
    if !yes {
        return Err(Exit::error(
            exit::REJECTED,
            "erasure destroys the citizen's keys and data and cannot be undone: add --yes to confirm",
        ));
    }
    let v = Client::operator(conn)?.post_json(
        "/v1/admin/erase",
        &json!({"citizen": citizen, "confirm": true}),
        "erasure",
    )?;
    if json {
        println!("{}", json!({"ok": true, "audit_index": v["audit_index"]}));
    } else {
        println!(
            "erased: the citizen's keys are destroyed, their data and tokens deleted; the log keeps \
             the fact (audit entry {}); run `vault-cli keys compact` during the next maintenance \
             window so the ciphertexts also leave the store's files",
            v["audit_index"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks a backup file's magic, version and structure (format v2,
/// `vault-core/src/backup.rs`): every tree's entries lie inside the file and end exactly
/// at the trailing 32-byte MAC. The MAC itself needs the vault's keys: `restore` checks it
/// after the passphrase opens them.
pub(crate) fn check_backup(bytes: &[u8]) -> Result<(), &'static str> {
    const MAC_LEN: usize = 32;
    if bytes.len() < 4 + 1 + MAC_LEN {
        return Err("too short");
    }
    if &bytes[..4] != b"CVBK" {
        return Err("not a vault backup (bad magic)");
    }
    if bytes[4] != 2 {
        return Err("unsupported backup version");
    }
    let mut buf = &bytes[5..bytes.len() - MAC_LEN];
    let mut take = |n: usize| -> Result<&[u8], &'static str> {
        if buf.len() < n {
            return Err("truncated or damaged");
        }
        let (a, b) = buf.split_at(n);
        buf = b;
        Ok(a)
    };
    let u32_of = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    while let Ok(name_len) = take(1) {
        let name_len = usize::from(name_len[0]);
        take(name_len)?;
        let c = take(8)?;
        let count = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        for _ in 0..count {
            let kl = u32_of(take(4)?);
            take(kl)?;
            let vl = u32_of(take(4)?);
            take(vl)?;
        }
    }
    Ok(())
}

/// `vault-cli backup --out FILE`.
pub(crate) fn backup(conn: &Conn, out: &Path, json: bool) -> anyhow::Result<ExitCode> {
    files::must_not_exist(out)?;
    let bytes = Client::operator(conn)?.get_bytes("/v1/admin/backup", "backup")?;
    check_backup(&bytes).map_err(|why| {
        anyhow::anyhow!("the server sent a backup that does not check out ({why}): nothing was written; try again")
    })?;
    files::write_new(out, &bytes, Mode::Secret)?;
    if json {
        println!("{}", json!({"ok": true, "file": out, "bytes": bytes.len()}));
    } else {
        println!(
            "backup written to {} ({} bytes, structure checked; mode 0600). Field values stay \
             encrypted; `vault-cli restore` checks its MAC and restores it into a new directory",
            out.display(),
            bytes.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `vault-cli deferred lift INDEX --reference TEXT`: discloses a deferred access at once.
pub(crate) fn lift_deferred(
    conn: &Conn,
    index: u64,
    reference: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let v = Client::operator(conn)?.post_json(
        &format!("/v1/admin/deferred/{index}/lift"),
        &json!({ "reference": reference }),
        "lift",
    )?;
    if json {
        println!(
            "{}",
            json!({"ok": true, "deferred_index": index, "audit_index": v["audit_index"]})
        );
    } else {
        println!(
            "lifted: deferred access {index} is disclosed to its citizen (disclosure entry {})",
            v["audit_index"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_backup_is_detected() {
        let mut body = b"CVBK\x02".to_vec();
        body.extend_from_slice(&[4]);
        body.extend_from_slice(b"meta");
        body.extend_from_slice(&1u64.to_be_bytes());
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(b"k");
        body.extend_from_slice(&2u32.to_be_bytes());
        body.extend_from_slice(b"vv");
        body.extend_from_slice(&[7u8; 32]);
        assert_eq!(check_backup(&body), Ok(()));
        let mut bad = body.clone();
        bad[5] ^= 1;
        assert!(check_backup(&bad).is_err());
        assert!(check_backup(&body[..body.len() - 1]).is_err());
        let mut v1 = body;
        v1[4] = 1;
        assert_eq!(check_backup(&v1), Err("unsupported backup version"));
    }
}
