//! The canonical form of a policy set: one byte string that depends only on what the set
//! says (its purposes, fields, agencies and rules), not on how its files are split,
//! ordered, commented or spaced. The vault records the SHA-256 of it as the set's digest
//! (the audit entries' `policy_set`), and an auditor's replay finds a set by it.
//!
//! Format (`docs/policies.md`, "Canonical form"): the line `vault policy set v1`, then one
//! line per item, each a kind followed by its values, every value written as
//! ` <byte length>:<bytes>` (so no value can run into the next), lists as their item
//! count followed by the items. Items in this order: purposes by code; categories by id
//! (fields in file order); fields by name; agencies by id, each followed by its statutory
//! rules and then its break-glass rules, in file order (the order the evaluation tries
//! them).

use crate::model::PolicySet;

/// The version line of the canonical form.
pub const CANONICAL_HEADER: &str = "vault policy set v1\n";

struct Out(Vec<u8>);

impl Out {
    fn kind(&mut self, kind: &str) -> &mut Self {
        self.0.extend_from_slice(kind.as_bytes());
        self
    }

    fn value(&mut self, v: &str) -> &mut Self {
        self.0.push(b' ');
        self.0.extend_from_slice(v.len().to_string().as_bytes());
        self.0.push(b':');
        self.0.extend_from_slice(v.as_bytes());
        self
    }

    fn list<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a str>) -> &mut Self {
        self.0.push(b' ');
        self.0.extend_from_slice(items.len().to_string().as_bytes());
        for i in items {
            self.value(i);
        }
        self
    }

    fn end(&mut self) {
        self.0.push(b'\n');
    }
}

impl PolicySet {
    /// The canonical form of the set (the module's documentation): equal for two sets
    /// exactly when they hold the same purposes, vocabulary, agencies and rules.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut o = Out(CANONICAL_HEADER.as_bytes().to_vec());
        for p in self.purposes.values() {
            o.kind("purpose")
                .value(p.code.as_str())
                .value(&p.description)
                .value(p.dpv.as_deref().unwrap_or(""))
                .end();
        }
        for c in self.categories.values() {
            o.kind("category")
                .value(c.id.as_str())
                .value(&c.description)
                .list(c.fields.iter().map(|f| f.as_str()));
            // Only when named, so a set without category concepts keeps its digest.
            if let Some(dpv) = &c.dpv {
                o.value(dpv);
            }
            o.end();
        }
        for f in self.fields.values() {
            o.kind("field")
                .value(f.name.as_str())
                .value(&f.description)
                .value(f.sensitivity.code())
                .end();
        }
        for a in self.agencies.values() {
            o.kind("agency")
                .value(a.id.as_str())
                .value(&a.name)
                .list(a.writes.iter().map(|c| c.as_str()))
                .list(a.purposes.iter().map(|p| p.as_str()))
                .end();
            for r in &a.statutory {
                o.kind("statutory")
                    .value(r.id.as_str())
                    .value(r.agency.as_str())
                    .value(r.purpose.as_str())
                    .list(r.fields.iter().map(|f| f.as_str()))
                    .value(r.legal_basis.code())
                    .value(&r.legal_reference);
                // Only a deferring rule says so: the digests of sets without one are
                // those computed before `disclosure` existed.
                match r.disclosure {
                    Some(crate::Disclosure::AfterDays(n)) => {
                        o.value("disclosure_after_days").value(&n.to_string());
                    }
                    Some(crate::Disclosure::UntilLifted) => {
                        o.value("disclosure_until_lifted");
                    }
                    None => {}
                }
                o.end();
            }
            for r in &a.break_glass {
                o.kind("break_glass")
                    .value(r.id.as_str())
                    .value(r.agency.as_str())
                    .value(r.purpose.as_str())
                    .list(r.fields.iter().map(|f| f.as_str()))
                    .value(&r.max_validity_secs.to_string())
                    .value(&r.legal_reference)
                    .end();
            }
        }
        o.0
    }
}

#[cfg(test)]
mod tests {
    use crate::PolicySet;

    const A: &str = r#"version = 1
[[purpose]]
code = "tax_assessment"
description = "Assess tax"
[[category]]
id = "identity"
description = "Who"
sensitivity = "ordinary"
[[category.field]]
name = "full_name"
description = "Name"
"#;

    const B: &str = r#"version = 1
[[agency]]
id = "tax_authority"
name = "Tax"
writes = []
purposes = ["tax_assessment"]
[[agency.statutory]]
id = "tax_identity"
purpose = "tax_assessment"
fields = ["identity.full_name"]
legal_basis = "legal_obligation"
reference = "Tax Act s. 1"
"#;

    fn load(files: &[(&str, &str)]) -> PolicySet {
        PolicySet::from_sources(files).expect("a valid set")
    }

    #[test]
    fn the_canonical_form_ignores_file_layout_and_comments_but_not_rules() {
        let split = load(&[("a.toml", A), ("b.toml", B)]);
        let one_file = load(&[(
            "all.toml",
            &format!("# comment\n{A}\n{}", B.trim_start_matches("version = 1\n")),
        )]);
        assert_eq!(split.canonical_bytes(), one_file.canonical_bytes());
        let other_reference = load(&[("a.toml", A), ("b.toml", &B.replace("s. 1", "s. 2"))]);
        assert_ne!(split.canonical_bytes(), other_reference.canonical_bytes());
        let text = String::from_utf8(split.canonical_bytes()).expect("UTF-8");
        assert!(
            text.starts_with("vault policy set v1\npurpose 14:tax_assessment 10:Assess tax 0:\n")
        );
        assert!(text.contains("\nstatutory 12:tax_identity 13:tax_authority 14:tax_assessment 1 18:identity.full_name 16:legal_obligation 12:Tax Act s. 1\n"));
    }
}
