//! C2SP tlog-policy: which logs a verifier accepts, which witnesses it knows, and the
//! quorum of cosignatures a checkpoint needs.
//!
//! ```text
//! log <vkey> [<url>]
//! witness <name> <vkey> [<url>]
//! group <name> all|any|<k> <member>...
//! quorum <name>|none
//! ```
//! Lines are separated by newlines, items by spaces or tabs; blank lines and lines
//! starting with `#` are ignored. A group or the quorum names only witnesses and groups
//! defined on earlier lines; exactly one quorum line; no two logs or witnesses share a
//! public key.

use std::collections::{HashMap, HashSet};

use crate::cosignature::CosignatureVerifier;
use crate::note::{Checkpoint, NoteError, NoteVerifier};

/// The largest policy accepted.
pub const MAX_POLICY_LEN: usize = 64 * 1024;

/// A policy line that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("witness policy line {line}: {reason}")]
pub struct PolicyError {
    /// The 1-based line number (0: the whole file).
    pub line: usize,
    /// What is wrong and what to do.
    pub reason: String,
}

/// A witness of the policy.
#[derive(Clone, Debug)]
pub struct PolicyWitness {
    /// The name the policy gives it.
    pub name: String,
    /// Its cosignature key.
    pub verifier: CosignatureVerifier,
    /// Its submission prefix, if given.
    pub url: Option<String>,
}

/// A log of the policy.
#[derive(Clone, Debug)]
pub struct PolicyLog {
    /// Its checkpoint key (the key name is the origin).
    pub verifier: NoteVerifier,
    /// Its verifier key string as written.
    pub vkey: String,
    /// Its URL, if given.
    pub url: Option<String>,
}

#[derive(Clone, Debug)]
struct Group {
    threshold: usize,
    members: Vec<String>,
}

/// A parsed tlog-policy.
#[derive(Clone, Debug)]
pub struct WitnessPolicy {
    logs: Vec<PolicyLog>,
    witnesses: Vec<PolicyWitness>,
    groups: HashMap<String, Group>,
    /// `None`: `quorum none`.
    quorum: Option<String>,
}

/// A checkpoint checked against a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessedCheckpoint {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// The names of the policy's witnesses with a valid cosignature on it, in policy order.
    pub cosigned_by: Vec<String>,
    /// Whether those satisfy the quorum.
    pub quorum_met: bool,
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s != "none" && s.bytes().all(|b| b.is_ascii_graphic())
}

impl WitnessPolicy {
    /// Parses a policy.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        if text.len() > MAX_POLICY_LEN {
            return Err(PolicyError {
                line: 0,
                reason: format!("the policy is larger than {MAX_POLICY_LEN} bytes"),
            });
        }
        let mut logs: Vec<PolicyLog> = Vec::new();
        let mut witnesses: Vec<PolicyWitness> = Vec::new();
        let mut groups: HashMap<String, Group> = HashMap::new();
        let mut quorum: Option<Option<String>> = None;
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let err = |reason: String| PolicyError { line, reason };
            let words: Vec<&str> = raw.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
            let Some(&keyword) = words.first() else {
                continue;
            };
            if keyword.starts_with('#') {
                continue;
            }
            let defined =
                |name: &str| witnesses.iter().any(|w| w.name == name) || groups.contains_key(name);
            match keyword {
                "log" => {
                    if !(2..=3).contains(&words.len()) {
                        return Err(err("expected `log <vkey> [<url>]`".into()));
                    }
                    let verifier =
                        NoteVerifier::parse(words[1]).map_err(|e| err(format!("log key: {e}")))?;
                    if logs
                        .iter()
                        .any(|l| l.verifier.public_key() == verifier.public_key())
                    {
                        return Err(err("the same log key is listed twice".into()));
                    }
                    logs.push(PolicyLog {
                        verifier,
                        vkey: words[1].to_owned(),
                        url: words.get(2).map(|s| (*s).to_owned()),
                    });
                }
                "witness" => {
                    if !(3..=4).contains(&words.len()) {
                        return Err(err("expected `witness <name> <vkey> [<url>]`".into()));
                    }
                    let name = words[1];
                    if !is_name(name) || defined(name) {
                        return Err(err(format!(
                            "`{name}` is not a new name (`none` is reserved; witnesses and groups share names)"
                        )));
                    }
                    let verifier = CosignatureVerifier::parse(words[2]).map_err(|e| {
                        err(format!(
                            "witness key (a cosignature/v1 key, type 0x04): {e}"
                        ))
                    })?;
                    if witnesses
                        .iter()
                        .any(|w| w.verifier.public_key() == verifier.public_key())
                    {
                        return Err(err("the same witness key is listed twice".into()));
                    }
                    witnesses.push(PolicyWitness {
                        name: name.to_owned(),
                        verifier,
                        url: words.get(3).map(|s| (*s).to_owned()),
                    });
                }
                "group" => {
                    if words.len() < 4 {
                        return Err(err("expected `group <name> all|any|<k> <member>...`".into()));
                    }
                    let name = words[1];
                    if !is_name(name) || defined(name) {
                        return Err(err(format!("`{name}` is not a new name")));
                    }
                    let members: Vec<String> = words[3..].iter().map(|s| (*s).to_owned()).collect();
                    for m in &members {
                        if !defined(m) {
                            return Err(err(format!(
                                "member `{m}` is not a witness or group defined above"
                            )));
                        }
                    }
                    if members.iter().collect::<HashSet<_>>().len() != members.len() {
                        return Err(err("a member is listed twice".into()));
                    }
                    let threshold = match words[2] {
                        "all" => members.len(),
                        "any" => 1,
                        k => match k.parse::<usize>() {
                            Ok(k)
                                if (1..=members.len()).contains(&k)
                                    && k.to_string() == words[2] =>
                            {
                                k
                            }
                            _ => {
                                return Err(err(format!(
                                    "threshold `{k}` is not `all`, `any` or a number from 1 to {}",
                                    members.len()
                                )))
                            }
                        },
                    };
                    groups.insert(name.to_owned(), Group { threshold, members });
                }
                "quorum" => {
                    if words.len() != 2 {
                        return Err(err("expected `quorum <name>`".into()));
                    }
                    if quorum.is_some() {
                        return Err(err("a second quorum line: a policy has exactly one".into()));
                    }
                    quorum = Some(match words[1] {
                        "none" => None,
                        name if defined(name) => Some(name.to_owned()),
                        name => {
                            return Err(err(format!(
                                "quorum `{name}` is not a witness or group defined above"
                            )))
                        }
                    });
                }
                other => {
                    return Err(err(format!(
                        "unknown keyword `{other}` (expected log, witness, group or quorum)"
                    )))
                }
            }
        }
        let quorum = quorum.ok_or(PolicyError {
            line: 0,
            reason: "no quorum line: add `quorum <group or witness>` (or `quorum none`)".into(),
        })?;
        Ok(Self {
            logs,
            witnesses,
            groups,
            quorum,
        })
    }

    /// The logs.
    pub fn logs(&self) -> &[PolicyLog] {
        &self.logs
    }

    /// The witnesses, in policy order.
    pub fn witnesses(&self) -> &[PolicyWitness] {
        &self.witnesses
    }

    /// Whether the quorum is `none`.
    pub fn needs_no_witness(&self) -> bool {
        self.quorum.is_none()
    }

    /// Whether the witnesses named in `cosigned` satisfy the quorum.
    pub fn quorum_met(&self, cosigned: &HashSet<&str>) -> bool {
        match &self.quorum {
            None => true,
            Some(name) => self.witnessed(name, cosigned, 0),
        }
    }

    fn witnessed(&self, name: &str, cosigned: &HashSet<&str>, depth: usize) -> bool {
        match self.groups.get(name) {
            // Groups only name earlier definitions, so the recursion ends; the depth bound
            // is a second guard.
            Some(g) if depth < 64 => {
                g.members
                    .iter()
                    .filter(|m| self.witnessed(m, cosigned, depth + 1))
                    .count()
                    >= g.threshold
            }
            Some(_) => false,
            None => cosigned.contains(name),
        }
    }

    /// Checks `note`: signed by one of the policy's logs (the origin is its key name), and
    /// which witnesses cosigned it. A cosignature line of a known witness that does not
    /// verify is an error; lines of unknown keys are ignored.
    pub fn check(&self, note: &str) -> Result<WitnessedCheckpoint, NoteError> {
        let mut last = NoteError::NotSignedByKey {
            name: "any log of the witness policy".into(),
        };
        let mut checkpoint = None;
        for log in &self.logs {
            match crate::SignedCheckpoint::parse(note, &log.verifier) {
                Ok(c) => {
                    checkpoint = Some(c.checkpoint);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let checkpoint = checkpoint.ok_or(last)?;
        let mut cosigned_by = Vec::new();
        for w in &self.witnesses {
            if w.verifier.verify(note)?.is_some() {
                cosigned_by.push(w.name.clone());
            }
        }
        let set: HashSet<&str> = cosigned_by.iter().map(String::as_str).collect();
        let quorum_met = self.quorum_met(&set);
        Ok(WitnessedCheckpoint {
            checkpoint,
            cosigned_by,
            quorum_met,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosignature::CosignatureSigner;
    use crate::note::NoteSigner;

    fn keys() -> (NoteSigner, Vec<CosignatureSigner>) {
        let log = NoteSigner::from_seed("example.com/log", &[1; 32]).unwrap();
        let ws = (0..3u8)
            .map(|i| CosignatureSigner::from_seed(&format!("w{i}.example"), &[10 + i; 32]).unwrap())
            .collect();
        (log, ws)
    }

    fn policy(log: &NoteSigner, ws: &[CosignatureSigner], rule: &str) -> String {
        let mut p = format!("# test\nlog {}\n", log.verifier_key());
        for (i, w) in ws.iter().enumerate() {
            p.push_str(&format!(
                "witness W{i} {} https://w{i}.example/\n",
                w.verifier_key()
            ));
        }
        p.push_str(rule);
        p
    }

    #[test]
    fn a_two_of_three_quorum_needs_two_valid_cosignatures() {
        let (log, ws) = keys();
        let p = WitnessPolicy::parse(&policy(&log, &ws, "group G 2 W0 W1 W2\nquorum G\n")).unwrap();
        let body = "example.com/log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let note = log.sign(body).unwrap();
        let one = format!("{note}{}", ws[0].cosign(body, 5));
        let two = format!("{one}{}", ws[2].cosign(body, 6));
        let c = p.check(&one).unwrap();
        assert_eq!((c.cosigned_by.len(), c.quorum_met), (1, false));
        let c = p.check(&two).unwrap();
        assert_eq!(c.cosigned_by, vec!["W0".to_owned(), "W2".to_owned()]);
        assert!(c.quorum_met);
        // A note not signed by the log fails, whatever its cosignatures.
        let other = NoteSigner::from_seed("example.com/log", &[2; 32]).unwrap();
        let forged = format!(
            "{}{}{}",
            other.sign(body).unwrap(),
            ws[0].cosign(body, 5),
            ws[1].cosign(body, 5)
        );
        assert!(p.check(&forged).is_err());
    }

    #[test]
    fn nested_groups_and_none() {
        let (log, ws) = keys();
        let set = |names: &[&'static str]| names.iter().copied().collect::<HashSet<&str>>();
        let p = WitnessPolicy::parse(&policy(
            &log,
            &ws,
            "group A any W0 W1\ngroup B all A W2\nquorum B\n",
        ))
        .unwrap();
        assert!(!p.quorum_met(&set(&["W0", "W1"])));
        assert!(p.quorum_met(&set(&["W1", "W2"])));
        let none = WitnessPolicy::parse(&policy(&log, &ws, "quorum none\n")).unwrap();
        assert!(none.quorum_met(&set(&[])) && none.needs_no_witness());
    }

    #[test]
    fn invalid_policies_name_their_line() {
        let (log, ws) = keys();
        let cases = [
            ("group G 2 W0 X\nquorum G\n", "member `X`"),
            ("group G 4 W0 W1 W2\nquorum G\n", "threshold `4`"),
            ("group G 02 W0 W1 W2\nquorum G\n", "threshold `02`"),
            ("quorum G\n", "quorum `G`"),
            ("quorum none\nquorum none\n", "second quorum"),
            ("", "no quorum line"),
            ("witness none k\nquorum none\n", "not a new name"),
            ("frobnicate\nquorum none\n", "unknown keyword"),
        ];
        for (rule, want) in cases {
            let e = WitnessPolicy::parse(&policy(&log, &ws, rule)).unwrap_err();
            assert!(e.to_string().contains(want), "{rule:?}: {e}");
        }
        let twice = format!("witness W9 {}\nquorum none\n", ws[0].verifier_key());
        let e = WitnessPolicy::parse(&policy(&log, &ws, &twice)).unwrap_err();
        assert!(e.to_string().contains("listed twice"), "{e}");
        let log_as_witness = format!("witness W9 {}\nquorum none\n", log.verifier_key());
        assert!(WitnessPolicy::parse(&policy(&log, &ws, &log_as_witness)).is_err());
    }
}
