//! The entry vectors of `testdata/entries/`.
