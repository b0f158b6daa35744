//! `vault-cli import`: legacy data (CSV or JSON) into the running vault.
//!
//! The whole file is parsed and validated locally first, row by row, against the policy
//! files the vault enforces (citizen id, category, field in the vocabulary, the agency is
//! the source of the category, sizes); every rejected row is reported with its line and
//! reason, and if there is any, NOTHING is sent. Valid files go to
//! `POST /v1/admin/import` in chunks (at most 500 rows and 48 KiB each); each chunk is one
//! atomic commit. Should the server fail mid-file, the report names exactly the lines
//! whose chunks were committed, and the chunk whose outcome the client cannot know.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::{json, Map, Value};
use vault_core::policies::{AgencyId, PolicySet};
use vault_core::{check_write, MAX_IMPORT_ROWS};

use crate::client::{Client, Conn};
use crate::exit::{self, Exit};

/// Most request body bytes per chunk (the server accepts 64 KiB).
const MAX_CHUNK_BYTES: usize = 48 * 1024;

/// The arguments of `vault-cli import`.
#[derive(clap::Args, Debug)]
pub(crate) struct ImportArgs {
    /// The file: .csv (header `citizen,category,field,value`, one field per line) or .json
    /// (an array of {"citizen", "category", "fields": {"name": value}}).
    file: PathBuf,
    /// The agency the legacy data comes from (it must be the source of every category).
    #[arg(long)]
    agency: String,
    /// The policy files the vault enforces (e.g. <data dir>/policies), to validate against.
    #[arg(long, env = "VAULT_POLICIES", value_name = "DIR")]
    policies: PathBuf,
    /// Validate only; send nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    conn: Conn,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// One record write: a citizen's category with its fields, from one or more lines.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Row {
    /// The lines it came from (first line first).
    pub(crate) lines: Vec<usize>,
    pub(crate) citizen: String,
    pub(crate) category: String,
    pub(crate) fields: BTreeMap<String, Value>,
}

/// A rejected line and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rejected {
    pub(crate) line: usize,
    pub(crate) reason: String,
}

/// A file-level syntax error.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {reason}")]
pub(crate) struct SyntaxError {
    line: usize,
    reason: String,
}

/// Parses RFC 4180 CSV (comma, `"` quoting with `""`, LF or CRLF); returns each record's
/// fields with the line it starts on. Blank lines are skipped.
pub(crate) fn parse_csv(text: &str) -> Result<Vec<(usize, Vec<String>)>, SyntaxError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted_field = false;
        loop {
            match chars.next() {
                None => {
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some('"') if field.is_empty() && !quoted_field => {
                    quoted_field = true;
                    loop {
                        match chars.next() {
                            None => {
                                return Err(SyntaxError {
                                    line: start,
                                    reason: "a quoted value is not closed: add the closing \""
                                        .to_owned(),
                                })
                            }
                            Some('"') if chars.peek() == Some(&'"') => {
                                chars.next();
                                field.push('"');
                            }
                            Some('"') => break,
                            Some(c) => {
                                if c == '\n' {
                                    line += 1;
                                }
                                field.push(c);
                            }
                        }
                    }
                    match chars.peek() {
                        None | Some(',') | Some('\n') | Some('\r') => {}
                        Some(_) => {
                            return Err(SyntaxError {
                                line,
                                reason: "text after a closing quote: quote the whole value"
                                    .to_owned(),
                            })
                        }
                    }
                }
                Some('"') => return Err(SyntaxError {
                    line,
                    reason:
                        "a quote inside an unquoted value: quote the value and double the \" inside"
                            .to_owned(),
                }),
                Some(',') => {
                    fields.push(std::mem::take(&mut field));
                    quoted_field = false;
                }
                Some('\r') if chars.peek() == Some(&'\n') => {}
                Some('\n') => {
                    line += 1;
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some(c) => field.push(c),
            }
        }
        let blank = fields.len() == 1 && fields[0].is_empty() && !quoted_field;
        if !blank {
            out.push((start, fields));
        }
    }
    Ok(out)
}

/// Line numbers (1-based) where each element of a top-level JSON array starts. The text
/// must already be known to be valid JSON.
fn json_element_lines(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut line = 1;
    let mut in_string = false;
    let mut escaped = false;
    let mut expect_element = false;
    for c in text.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            if c == '\n' {
                line += 1;
            }
            continue;
        }
        if c == '\n' {
            line += 1;
            continue;
        }
        if c.is_whitespace() {
            continue;
        }
        if expect_element && depth == 1 && c != ']' {
            out.push(line);
        }
        expect_element = false;
        match c {
            '"' => in_string = true,
            '[' | '{' => {
                depth += 1;
                if depth == 1 && c == '[' {
                    expect_element = true;
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 1 => expect_element = true,
            _ => {}
        }
    }
    out
}

/// What validation produced: the rows to send, or every rejected line.
#[derive(Debug)]
pub(crate) struct Validated {
    pub(crate) rows: Vec<Row>,
    pub(crate) rejected: Vec<Rejected>,
    /// Lines (fields, for CSV) read.
    pub(crate) lines: usize,
}

/// The size of a value as the vault stores it (its JSON text).
fn json_len(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |v| v.len())
}

/// Checks the fields of one citizen's category with the vault's own rule for a write
/// ([`vault_core::check_write`]); `Err` is the reason. A JSON `null` is no value.
fn check_fields(
    policy: &PolicySet,
    agency: &AgencyId,
    citizen: &str,
    category: &str,
    fields: &[(&str, &Value)],
) -> Result<(), String> {
    if let Some((f, _)) = fields.iter().find(|(_, v)| v.is_null()) {
        return Err(format!("field {category}.{f} has no value (null)"));
    }
    let lens: Vec<(&str, usize)> = fields.iter().map(|(f, v)| (*f, json_len(v))).collect();
    check_write(policy, agency, citizen, category, &lens)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

struct Grouper<'a> {
    policy: &'a PolicySet,
    agency: &'a AgencyId,
    rows: Vec<Row>,
    index: HashMap<(String, String), usize>,
    seen: HashMap<(String, String, String), usize>,
    rejected: Vec<Rejected>,
}

impl Grouper<'_> {
    fn add(&mut self, line: usize, citizen: &str, category: &str, field: &str, value: Value) {
        let key = (citizen.to_owned(), category.to_owned(), field.to_owned());
        if let Some(first) = self.seen.get(&key) {
            self.rejected.push(Rejected {
                line,
                reason: format!(
                    "field {category}.{field} of this citizen is already given on line {first}"
                ),
            });
            return;
        }
        self.seen.insert(key, line);
        let gk = (citizen.to_owned(), category.to_owned());
        let i = *self.index.entry(gk).or_insert_with(|| {
            self.rows.push(Row {
                lines: Vec::new(),
                citizen: citizen.to_owned(),
                category: category.to_owned(),
                fields: BTreeMap::new(),
            });
            self.rows.len() - 1
        });
        let row = &mut self.rows[i];
        if !row.lines.contains(&line) {
            row.lines.push(line);
        }
        row.fields.insert(field.to_owned(), value);
    }

    fn finish(mut self, lines: usize) -> Validated {
        for row in &self.rows {
            let fields: Vec<(&str, &Value)> =
                row.fields.iter().map(|(f, v)| (f.as_str(), v)).collect();
            if let Err(reason) = check_fields(
                self.policy,
                self.agency,
                &row.citizen,
                &row.category,
                &fields,
            ) {
                self.rejected.push(Rejected {
                    line: row.lines[0],
                    reason: format!("the fields of one citizen's {}: {reason}", row.category),
                });
            }
        }
        self.rejected.sort_by_key(|r| r.line);
        Validated {
            rows: self.rows,
            rejected: self.rejected,
            lines,
        }
    }
}

/// Validates CSV text (header `citizen,category,field,value`).
pub(crate) fn validate_csv(
    text: &str,
    policy: &PolicySet,
    agency: &AgencyId,
) -> Result<Validated, SyntaxError> {
    let records = parse_csv(text)?;
    let mut it = records.into_iter();
    match it.next() {
        Some((_, h)) if h == ["citizen", "category", "field", "value"] => {}
        Some((line, _)) => {
            return Err(SyntaxError {
                line,
                reason: "the first line must be the header citizen,category,field,value".to_owned(),
            })
        }
        None => {
            return Err(SyntaxError {
                line: 1,
                reason: "the file is empty".to_owned(),
            })
        }
    }
    let mut g = Grouper {
        policy,
        agency,
        rows: Vec::new(),
        index: HashMap::new(),
        seen: HashMap::new(),
        rejected: Vec::new(),
    };
    let mut n = 0;
    for (line, rec) in it {
        n += 1;
        if rec.len() != 4 {
            g.rejected.push(Rejected {
                line,
                reason: format!("{} columns; write citizen,category,field,value", rec.len()),
            });
            continue;
        }
        let value = Value::String(rec[3].clone());
        let checked = check_fields(g.policy, agency, &rec[0], &rec[1], &[(&rec[2], &value)]);
        match checked {
            Ok(()) => g.add(line, &rec[0], &rec[1], &rec[2], value),
            Err(reason) => g.rejected.push(Rejected { line, reason }),
        }
    }
    Ok(g.finish(n))
}

/// Validates JSON text (an array of `{"citizen", "category", "fields": {...}}`).
pub(crate) fn validate_json(
    text: &str,
    policy: &PolicySet,
    agency: &AgencyId,
) -> Result<Validated, SyntaxError> {
    let v: Value = serde_json::from_str(text).map_err(|e| SyntaxError {
        line: e.line(),
        reason: format!("not valid JSON: {e}"),
    })?;
    let Value::Array(items) = v else {
        return Err(SyntaxError {
            line: 1,
            reason: "the file must be a JSON array of {\"citizen\", \"category\", \"fields\"}"
                .to_owned(),
        });
    };
    let lines = json_element_lines(text);
    let mut g = Grouper {
        policy,
        agency,
        rows: Vec::new(),
        index: HashMap::new(),
        seen: HashMap::new(),
        rejected: Vec::new(),
    };
    let n = items.len();
    for (i, item) in items.into_iter().enumerate() {
        let line = lines.get(i).copied().unwrap_or(1);
        let mut reject = |reason: String| {
            g.rejected.push(Rejected {
                line,
                reason: format!("element {}: {reason}", i + 1),
            })
        };
        let Value::Object(mut obj) = item else {
            reject("not an object {\"citizen\", \"category\", \"fields\"}".to_owned());
            continue;
        };
        let (
            Some(Value::String(citizen)),
            Some(Value::String(category)),
            Some(Value::Object(fields)),
        ) = (
            obj.remove("citizen"),
            obj.remove("category"),
            obj.remove("fields"),
        )
        else {
            reject("needs \"citizen\" and \"category\" strings and a \"fields\" object".to_owned());
            continue;
        };
        if let Some(k) = obj.keys().next() {
            reject(format!(
                "unknown key \"{k}\": only citizen, category, fields"
            ));
            continue;
        }
        if fields.is_empty() {
            reject("\"fields\" is empty".to_owned());
            continue;
        }
        let pairs: Vec<(&str, &Value)> = fields.iter().map(|(f, v)| (f.as_str(), v)).collect();
        let checked = check_fields(policy, agency, &citizen, &category, &pairs);
        match checked {
            Ok(()) => {
                for (f, v) in fields {
                    g.add(line, &citizen, &category, &f, v);
                }
            }
            Err(reason) => reject(reason),
        }
    }
    Ok(g.finish(n))
}

fn row_json(r: &Row) -> Value {
    json!({"citizen": r.citizen, "category": r.category, "fields": r.fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Map<_, _>>()})
}

/// Splits rows into request bodies' row lists: at most [`MAX_IMPORT_ROWS`] rows and
/// [`MAX_CHUNK_BYTES`] of JSON each.
pub(crate) fn chunks(rows: &[Row]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, r) in rows.iter().enumerate() {
        let len = row_json(r).to_string().len() + 1;
        if i > start && (i - start >= MAX_IMPORT_ROWS || bytes + len > MAX_CHUNK_BYTES) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += len;
    }
    if start < rows.len() {
        out.push(start..rows.len());
    }
    out
}

/// `2-5, 9, 11-12`
pub(crate) fn ranges(mut lines: Vec<usize>) -> String {
    lines.sort_unstable();
    lines.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let mut j = i;
        while j + 1 < lines.len() && lines[j + 1] == lines[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            lines[i].to_string()
        } else {
            format!("{}-{}", lines[i], lines[j])
        });
        i = j + 1;
    }
    parts.join(", ")
}

fn lines_of(rows: &[Row]) -> Vec<usize> {
    rows.iter().flat_map(|r| r.lines.iter().copied()).collect()
}

/// `vault-cli import`.
pub(crate) fn run(a: ImportArgs) -> anyhow::Result<ExitCode> {
    let agency =
        AgencyId::new(&a.agency).map_err(|e| Exit::error(exit::REJECTED, e.to_string()))?;
    let policy = PolicySet::load_dir(&a.policies).map_err(|errors| {
        Exit::error(
            exit::REJECTED,
            format!(
                "the policy files in {} are not valid:\n{errors}\nfix them (see `vault-cli policies check`) and run the command again",
                a.policies.display()
            ),
        )
    })?;
    if policy.agency(&agency).is_none() {
        return Err(Exit::error(
            exit::REJECTED,
            format!(
                "agency {agency} is not in the policy registry of {}",
                a.policies.display()
            ),
        ));
    }
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("cannot read {} (it must be UTF-8 text)", a.file.display()))?;
    let ext = a
        .file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let validated = match ext.as_str() {
        "csv" => validate_csv(&text, &policy, &agency),
        "json" => validate_json(&text, &policy, &agency),
        _ => {
            return Err(Exit::error(
                exit::REJECTED,
                format!(
                    "{}: name the file .csv or .json so its format is known",
                    a.file.display()
                ),
            ))
        }
    }
    .map_err(|e| {
        Exit::error(
            exit::REJECTED,
            format!("{}: {e}; nothing was imported", a.file.display()),
        )
    })?;
    if !validated.rejected.is_empty() {
        report_rejected(&a.file, &validated, a.json)?;
        return Ok(ExitCode::from(exit::REJECTED));
    }
    if validated.rows.is_empty() {
        return Err(Exit::error(
            exit::REJECTED,
            format!("{}: no rows to import", a.file.display()),
        ));
    }
    let plan = chunks(&validated.rows);
    if a.dry_run {
        if a.json {
            println!(
                "{}",
                json!({"ok": true, "dry_run": true, "lines": validated.lines, "records": validated.rows.len(), "chunks": plan.len()})
            );
        } else {
            println!(
                "{}: {} lines valid ({} record writes in {} request(s)); nothing sent (--dry-run)",
                a.file.display(),
                validated.lines,
                validated.rows.len(),
                plan.len()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    send(&a, &validated, &plan)
}

fn report_rejected(file: &Path, v: &Validated, json: bool) -> anyhow::Result<()> {
    if json {
        let rejected: Vec<Value> = v
            .rejected
            .iter()
            .map(|r| json!({"line": r.line, "reason": r.reason}))
            .collect();
        println!(
            "{}",
            json!({"ok": false, "imported": 0, "rejected": rejected})
        );
    } else {
        let mut err = std::io::stderr().lock();
        for r in &v.rejected {
            writeln!(err, "{}:{}: {}", file.display(), r.line, r.reason)?;
        }
        writeln!(
            err,
            "{} of {} lines rejected; nothing was imported: fix them and import the file again",
            v.rejected.len(),
            v.lines
        )?;
    }
    Ok(())
}

fn send(
    a: &ImportArgs,
    v: &Validated,
    plan: &[std::ops::Range<usize>],
) -> anyhow::Result<ExitCode> {
    let client = Client::operator(&a.conn)?;
    let tty = std::io::stderr().is_terminal();
    let show = plan.len() > 1;
    let mut first_index: Option<u64> = None;
    for (k, range) in plan.iter().enumerate() {
        let rows = &v.rows[range.clone()];
        let body =
            json!({"agency": a.agency, "rows": rows.iter().map(row_json).collect::<Vec<_>>()});
        match client.post_json("/v1/admin/import", &body, "import") {
            Ok(answer) => {
                first_index.get_or_insert(answer["audit_index"].as_u64().unwrap_or(0));
                let done = range.end;
                if show {
                    let pct = done * 100 / v.rows.len();
                    let bar = "#".repeat(pct / 5) + &".".repeat(20 - pct / 5);
                    eprint!(
                        "{}importing [{bar}] {done}/{} records ({pct}%){}",
                        if tty { "\r" } else { "" },
                        v.rows.len(),
                        if tty { "" } else { "\n" }
                    );
                    let _ = std::io::stderr().flush();
                }
            }
            Err(e) => {
                if show && tty {
                    eprintln!();
                }
                let committed = &v.rows[..range.start];
                let refused = crate::exit::code_of_error(&e) == exit::REJECTED;
                let outcome = if refused {
                    "was refused and not committed"
                } else {
                    "may or may not have been committed (the server failed or the connection \
                     broke): check the audit log before sending its lines again"
                };
                let before = if committed.is_empty() {
                    "no line was committed before it".to_owned()
                } else {
                    format!(
                        "{} lines were committed before it ({})",
                        lines_of(committed).len(),
                        ranges(lines_of(committed))
                    )
                };
                let msg = format!(
                    "{e}\nimport stopped at request {} of {} (lines {}): it {outcome}; {before}; \
                     later lines were not sent",
                    k + 1,
                    plan.len(),
                    ranges(lines_of(rows)),
                );
                if a.json {
                    println!(
                        "{}",
                        json!({"ok": false, "committed_lines": lines_of(committed), "failed_lines": lines_of(rows),
                               "failed_chunk_committed": if refused { json!(false) } else { Value::Null },
                               "error": e.to_string()})
                    );
                }
                let code = if committed.is_empty() && refused {
                    exit::REJECTED
                } else {
                    exit::PARTIAL
                };
                return Err(Exit::error(code, msg));
            }
        }
    }
    if show && tty {
        eprintln!();
    }
    if a.json {
        println!(
            "{}",
            json!({"ok": true, "lines": v.lines, "records": v.rows.len(), "chunks": plan.len(), "first_audit_index": first_index})
        );
    } else {
        println!(
            "imported {}: {} lines as {} record writes in {} request(s), first audit entry {}",
            a.file.display(),
            v.lines,
            v.rows.len(),
            plan.len(),
            first_index.unwrap_or(0)
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference model of CSV writing: quote when needed, double the quotes.
    fn write_csv(rows: &[Vec<String>]) -> String {
        let mut out = String::new();
        for r in rows {
            let cells: Vec<String> = r
                .iter()
                .map(|c| {
                    if c.contains([',', '"', '\n', '\r']) || c.is_empty() {
                        format!("\"{}\"", c.replace('"', "\"\""))
                    } else {
                        c.clone()
                    }
                })
                .collect();
            out.push_str(&cells.join(","));
            out.push_str("\r\n");
        }
        out
    }

    proptest! {
        #[test]
        fn csv_parses_what_a_writer_wrote_with_start_lines(
            rows in proptest::collection::vec(
                proptest::collection::vec("[a-z\",\n é]{0,6}", 1..5), 0..20)
        ) {
            let text = write_csv(&rows);
            let parsed = parse_csv(&text).expect("parses");
            let cells: Vec<Vec<String>> = parsed.iter().map(|(_, r)| r.clone()).collect();
            prop_assert_eq!(&cells, &rows);
            // Each record starts on the line after the previous record's last line.
            let mut line = 1;
            for ((start, _), r) in parsed.iter().zip(&rows) {
                prop_assert_eq!(*start, line);
                line += 1 + r.iter().map(|c| c.matches('\n').count()).sum::<usize>();
            }
        }
    }

    #[test]
    fn csv_syntax_errors_name_the_line() {
        let e = parse_csv("a,b\n\"open,c\n").expect_err("unclosed");
        assert_eq!(e.line, 2);
        let e = parse_csv("a,b\nx\"y,c\n").expect_err("stray quote");
        assert_eq!(e.line, 2);
        let e = parse_csv("a\n\"q\"z\n").expect_err("text after quote");
        assert_eq!(e.line, 2);
        // Blank lines are skipped, a BOM is ignored.
        let ok = parse_csv("\u{feff}a,b\n\n\nc,d").expect("parses");
        assert_eq!(
            ok,
            vec![
                (1, vec!["a".into(), "b".into()]),
                (4, vec!["c".into(), "d".into()])
            ]
        );
    }

    #[test]
    fn json_elements_are_found_by_line() {
        let text = "[\n {\"a\": \"[,{\\\"\"},\n\n {\"b\": [1,\n 2]}, 3\n]";
        assert_eq!(json_element_lines(text), vec![2, 4, 5]);
        assert_eq!(json_element_lines("[]"), Vec::<usize>::new());
    }

    fn row(i: usize, value_len: usize) -> Row {
        Row {
            lines: vec![i + 2],
            citizen: format!("C{i}"),
            category: "identity".to_owned(),
            fields: [("full_name".to_owned(), Value::String("x".repeat(value_len)))]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn chunks_respect_the_row_and_byte_limits_and_cover_every_row() {
        let rows: Vec<Row> = (0..1234).map(|i| row(i, 10)).collect();
        let c = chunks(&rows);
        assert_eq!(c, vec![0..500, 500..1000, 1000..1234]);
        let big: Vec<Row> = (0..40).map(|i| row(i, 4000)).collect();
        let c = chunks(&big);
        assert!(c.len() > 1);
        assert_eq!(c.first().map(|r| r.start), Some(0));
        assert_eq!(c.last().map(|r| r.end), Some(40));
        for w in c.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        for r in &c {
            let bytes: usize = big[r.clone()]
                .iter()
                .map(|x| row_json(x).to_string().len() + 1)
                .sum();
            assert!(bytes <= MAX_CHUNK_BYTES, "{bytes}");
        }
    }

    #[test]
    fn line_ranges_are_compact() {
        assert_eq!(ranges(vec![5, 2, 3, 4, 9, 11, 12]), "2-5, 9, 11-12");
        assert_eq!(ranges(vec![]), "");
    }
}
