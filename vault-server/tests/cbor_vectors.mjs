// Runs the citizen page's entry decoder (src/web/cbor.js) on the entry vectors of
// audit/testdata/entries/ (format: its README.md): every valid leaf must decode to its
// `entry` (or be refused with its `js_refuses` code), every invalid one must be refused
// with its `fault` code. Usage: node cbor_vectors.mjs CORPUS. Exits 1 on any mismatch,
// printing each one. No dependencies beyond Node itself.

import { readFileSync } from "node:fs";
import { isDeepStrictEqual } from "node:util";
import vm from "node:vm";

const corpusPath = process.argv[2];
if (!corpusPath) {
  console.error("usage: node cbor_vectors.mjs audit/testdata/entries/vectors.json");
  process.exit(2);
}

// cbor.js is a plain browser script that sets window.vaultCbor.
const decoderPath = new URL("../src/web/cbor.js", import.meta.url);
globalThis.window = globalThis;
vm.runInThisContext(readFileSync(decoderPath, "utf8"), { filename: decoderPath.pathname });
const { decodeEntry } = globalThis.vaultCbor;

const corpus = JSON.parse(readFileSync(corpusPath, "utf8"));

function bytesOf(hex) {
  if (hex.length % 2 !== 0 || /[^0-9a-f]/.test(hex)) throw new Error("bad hex in the corpus");
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const hexOf = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const decimal = (n) => (n === null ? null : String(n));

// The decoded entry in the corpus's JSON form (README.md).
function asJson(m) {
  return {
    v: m.v,
    index: decimal(m.index),
    time: decimal(m.time),
    prev: hexOf(m.prev),
    actor: { kind: m.actor.kind, id: m.actor.id },
    initiator: m.initiator,
    action: m.action,
    processing: m.processing,
    purpose: m.purpose,
    subject: m.subject === null ? null : hexOf(m.subject),
    subject_prev: decimal(m.subject_prev),
    requested: [...m.requested],
    released: [...m.released],
    withheld: m.withheld.map((w) => ({ field: w.field, reason: w.reason })),
    legal_basis: m.legal_basis,
    legal_reference: m.legal_reference,
    consent_id: m.consent_id,
    decision: m.decision,
    justification: m.v >= 4 && m.justification !== null ? hexOf(m.justification) : m.justification,
    review: m.review,
    official: m.official === null ? null : hexOf(m.official),
    policy_set: m.policy_set === null ? null : hexOf(m.policy_set),
    claim: m.claim === null ? null : { legal_basis: m.claim.legal_basis, justified: m.claim.justified },
    terms: m.terms === null ? null : {
      agency: m.terms.agency,
      valid_from: decimal(m.terms.valid_from),
      expires_at: decimal(m.terms.expires_at),
      max_uses: decimal(m.terms.max_uses),
      data_life: decimal(m.terms.data_life),
      supersedes: m.terms.supersedes,
    },
    deferral: m.deferral === null ? null : "disclose_at" in m.deferral
      ? { disclose_at: decimal(m.deferral.disclose_at) }
      : { of: decimal(m.deferral.of), opening: hexOf(m.deferral.opening),
        lift: m.deferral.lift === null ? null : hexOf(m.deferral.lift) },
  };
}

// The decoder's verdict: { entry } or { fault } (a non-CborError is reported as such).
function judge(hex) {
  try {
    return { entry: asJson(decodeEntry(bytesOf(hex))) };
  } catch (e) {
    if (!(e instanceof globalThis.vaultCbor.CborError)) return { fault: "exception: " + e };
    return { fault: e.code === undefined ? "no code: " + e.message : e.code };
  }
}

const failures = [];
for (const t of corpus.valid) {
  const got = judge(t.leaf_hex);
  if (t.js_refuses !== undefined) {
    if (got.fault !== t.js_refuses) {
      failures.push(`${t.name}: expected the refusal ${t.js_refuses}, got ${JSON.stringify(got)}`);
    }
  } else if ("fault" in got) {
    failures.push(`${t.name}: a valid leaf was refused (${got.fault})`);
  } else if (!isDeepStrictEqual(got.entry, t.entry)) {
    failures.push(`${t.name}: decoded ${JSON.stringify(got.entry)}, expected ${JSON.stringify(t.entry)}`);
  }
}
for (const t of corpus.invalid) {
  const got = judge(t.leaf_hex);
  if (got.fault !== t.fault) {
    const what = "fault" in got ? "refused with " + got.fault : "accepted";
    failures.push(`${t.name}: expected the fault ${t.fault}, ${what}`);
  }
}

// The commitments: the page's WebCrypto recomputation matches each vector.
for (const t of corpus.commitments) {
  const got = hexOf(await globalThis.vaultCbor.textCommitment(t.field, bytesOf(t.salt_hex), t.text));
  if (got !== t.commitment_hex) {
    failures.push(`commitment to ${JSON.stringify(t.text)}: computed ${got}, expected ${t.commitment_hex}`);
  }
}
if (corpus.commitments.length === 0) failures.push("the corpus has no commitment vector");

// The deferred tags: the corpus's deferred accesses carry the tag of the citizen tag
// 0xc1 x 32 under the opening 00 01 .. 1f (audit/src/codec/tests/vectors.rs); the page's
// WebCrypto recomputation must give it.
let deferredTags = 0;
for (const t of corpus.valid) {
  if (!t.name.startsWith("v6-deferred-access")) continue;
  const citizen = new Uint8Array(32).fill(0xc1);
  const opening = Uint8Array.from({ length: 32 }, (_, i) => i);
  const got = hexOf(await globalThis.vaultCbor.deferredTag(citizen, opening));
  if (got !== t.entry.subject) failures.push(`${t.name}: deferred tag ${got}, expected ${t.entry.subject}`);
  deferredTags += 1;
}
if (deferredTags === 0) failures.push("the corpus has no deferred access");

for (const f of failures) console.log("FAIL " + f);
const total = corpus.valid.length + corpus.invalid.length + corpus.commitments.length;
console.log(`${total - failures.length} of ${total} vectors judged as the corpus says ` +
  `(${corpus.valid.length} valid, ${corpus.invalid.length} invalid, ` +
  `${corpus.commitments.length} commitments)`);
process.exit(failures.length === 0 ? 0 : 1);
