pub(crate) const DOCUMENT: &str = "{}";
