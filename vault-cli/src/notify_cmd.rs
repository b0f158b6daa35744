//! Notification verbs (live): webhook endpoints of agencies and of the citizens'
//! notification gateway, and the notification keys (docs/notifications.md).

use std::process::ExitCode;

use serde_json::{json, Value};

use crate::client::{Client, Conn};

/// `vault-cli agency webhook ...`.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum AgencyWebhookCmd {
    /// Set the agency's endpoint (https://): consent granted, withdrawn, expired and
    /// declined events are posted there from now on. Setting it again after it answered
    /// 410 Gone enables it again.
    Set {
        /// The agency id.
        id: String,
        /// The endpoint URL.
        url: String,
        /// Post up to N events in one message (a `batch`, docs/notifications.md); the
        /// default 1 posts each event as its own message.
        #[arg(long, value_name = "N", default_value_t = 1,
              value_parser = clap::value_parser!(u16).range(1..=i64::from(vault_core::MAX_WEBHOOK_BATCH)))]
        batch: u16,
        #[command(flatten)]
        conn: Conn,
        /// Print the server's answer as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show the agency's endpoint and what is queued for it.
    Show {
        /// The agency id.
        id: String,
        #[command(flatten)]
        conn: Conn,
        /// Print the server's answer as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Remove the agency's endpoint; what is queued for it is dropped.
    Remove {
        /// The agency id.
        id: String,
        #[command(flatten)]
        conn: Conn,
        /// Print the server's answer as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

impl AgencyWebhookCmd {
    /// The agency id and the step.
    pub(crate) fn split(self) -> (String, Step) {
        match self {
            AgencyWebhookCmd::Set {
                id,
                url,
                batch,
                conn,
                json,
            } => (
                id,
                Step::Set {
                    url,
                    batch,
                    conn,
                    json,
                },
            ),
            AgencyWebhookCmd::Show { id, conn, json } => (id, Step::Show { conn, json }),
            AgencyWebhookCmd::Remove { id, conn, json } => (id, Step::Remove { conn, json }),
        }
    }
}

/// `vault-cli notifications ...`.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum NotificationsCmd {
    /// The citizens' notification gateway: every event about a citizen (accesses, consent
    /// changes, erasure) is posted to it; it forwards by e-mail, SMS or app push.
    Gateway {
        #[command(subcommand)]
        step: Step,
    },
    /// List every endpoint set, with what is queued for each.
    List {
        #[command(flatten)]
        conn: Conn,
        /// Print the server's answer as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// The public keys that sign notifications now (also at /v1/notifications/keys).
    Keys {
        #[command(flatten)]
        conn: Conn,
        /// Print the server's answer as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Start a new notification key; the old one goes on signing beside it for 7 days, so
    /// receivers can add the new public key before dropping the old one.
    RotateKey {
        #[command(flatten)]
        conn: Conn,
        /// Print the server's answer as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// What to do with one endpoint.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum Step {
    /// Set the endpoint (an https:// URL).
    Set {
        /// The endpoint URL.
        url: String,
        /// Post up to N events in one message (a `batch`, docs/notifications.md); the
        /// default 1 posts each event as its own message. A gateway told of every access
        /// takes batches at a fraction of the cost.
        #[arg(long, value_name = "N", default_value_t = 1,
              value_parser = clap::value_parser!(u16).range(1..=i64::from(vault_core::MAX_WEBHOOK_BATCH)))]
        batch: u16,
        #[command(flatten)]
        conn: Conn,
        /// Print the server's answer as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show the endpoint and what is queued for it.
    Show {
        #[command(flatten)]
        conn: Conn,
        /// Print the server's answer as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Remove the endpoint; what is queued for it is dropped.
    Remove {
        #[command(flatten)]
        conn: Conn,
        /// Print the server's answer as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

fn describe(w: &Value) -> String {
    let state = match w["disabled_at"].as_str() {
        Some(t) => {
            format!("DISABLED: it answered 410 Gone at {t}; set it again to resume delivery")
        }
        None => "active".to_owned(),
    };
    let batch = match w["batch"].as_u64() {
        Some(n) if n > 1 => format!("\tbatches of up to {n}"),
        _ => String::new(),
    };
    format!(
        "{}\t{}\tset {}\t{} queued{batch}\t{state}",
        w["target"].as_str().unwrap_or("?"),
        w["url"].as_str().unwrap_or("?"),
        w["set_at"].as_str().unwrap_or("?"),
        w["queued"]
    )
}

/// Runs `step` on the endpoint at `path` (`who` names it in messages).
pub(crate) fn endpoint(step: Step, path: &str, who: &str) -> anyhow::Result<ExitCode> {
    let (v, json) = match step {
        Step::Set {
            url,
            batch,
            conn,
            json,
        } => (
            Client::operator(&conn)?.put_json(
                path,
                &json!({ "url": url, "batch": batch }),
                "webhook set",
            )?,
            json,
        ),
        Step::Show { conn, json } => (Client::operator(&conn)?.get_json(path, "webhook")?, json),
        Step::Remove { conn, json } => {
            let v = Client::operator(&conn)?.delete_json(path, "webhook removal")?;
            if !json {
                println!("removed the endpoint of {who}; what was queued for it is dropped");
                return Ok(ExitCode::SUCCESS);
            }
            (v, json)
        }
    };
    if json {
        println!("{v}");
    } else {
        println!("{}", describe(&v));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_keys(v: &Value) {
    for k in v["keys"].as_array().into_iter().flatten() {
        let state = match (k["current"].as_bool(), k["signs_until"].as_str()) {
            (Some(true), _) => "current".to_owned(),
            (_, Some(t)) => format!("previous, signs beside the current one until {t}"),
            _ => "?".to_owned(),
        };
        println!(
            "generation {}\t{}\t{state}",
            k["generation"],
            k["public_key"].as_str().unwrap_or("?")
        );
    }
}

/// Runs a `notifications` subcommand.
pub(crate) fn notifications(cmd: NotificationsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        NotificationsCmd::Gateway { step } => endpoint(
            step,
            "/v1/admin/gateway",
            "the citizens' notification gateway",
        ),
        NotificationsCmd::List { conn, json } => {
            let v = Client::operator(&conn)?.get_json("/v1/admin/webhooks", "webhook list")?;
            if json {
                println!("{v}");
                return Ok(ExitCode::SUCCESS);
            }
            let list = v["webhooks"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!(
                    "no endpoint is set: `vault-cli notifications gateway set URL`, \
                     `vault-cli agency webhook set ID URL`"
                );
            }
            for w in &list {
                println!("{}", describe(w));
            }
            Ok(ExitCode::SUCCESS)
        }
        NotificationsCmd::Keys { conn, json } => {
            let v =
                Client::public(&conn)?.get_json("/v1/notifications/keys", "notification keys")?;
            if json {
                println!("{v}");
            } else {
                print_keys(&v);
            }
            Ok(ExitCode::SUCCESS)
        }
        NotificationsCmd::RotateKey { conn, json } => {
            let v = Client::operator(&conn)?.post_json(
                "/v1/admin/notifications/rotate-key",
                &json!({}),
                "notification key rotation",
            )?;
            if json {
                println!("{v}");
            } else {
                print_keys(&v);
                println!(
                    "receivers: add the current key to your verifier now; the previous one \
                     stops signing at the time shown"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
