//! Consent and legal-basis model and its evaluation: pure functions of
//! (request, consents, rules, now), plus the policy files and their loader.
