// A small, strict CBOR (RFC 8949) decoder for the vault's audit leaves (docs/audit-log.md).
// It reads only what the entry format uses: unsigned and negative integers, byte strings,
// text strings, arrays and maps of definite length, false, true and null. It rejects
// everything else (indefinite lengths, tags, floats, undefined), integers not in their
// shortest form, map keys that are not unsigned integers, duplicate keys, keys out of the
// deterministic order of RFC 8949 section 4.2.1 (ascending), invalid UTF-8, too deep nesting
// and trailing bytes. So
// what the page shows was read from exactly the bytes whose hash it verified.
"use strict";

(function () {
  const MAX_DEPTH = 16;

  // `code` is a short stable name of the fault, the vocabulary of
  // audit/testdata/entries/README.md (the corpus both this decoder and the vault's agree on).
  class CborError extends Error {
    constructor(code, message) {
      super(message);
      this.code = code;
    }
  }

  function decode(bytes) {
    if (!(bytes instanceof Uint8Array)) {
      throw new CborError("wrong-type", "expected bytes");
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const utf8 = new TextDecoder("utf-8", { fatal: true });
    let pos = 0;

    function need(n) {
      if (pos + n > bytes.length) {
        throw new CborError("truncated", "the entry ends too early");
      }
    }

    // The argument of an initial byte, in its shortest form only.
    function argument(info) {
      if (info < 24) {
        return info;
      }
      let value;
      if (info === 24) {
        need(1);
        value = bytes[pos];
        pos += 1;
        if (value < 24) throw new CborError("non-canonical", "integer not in shortest form");
      } else if (info === 25) {
        need(2);
        value = view.getUint16(pos);
        pos += 2;
        if (value <= 0xff) throw new CborError("non-canonical", "integer not in shortest form");
      } else if (info === 26) {
        need(4);
        value = view.getUint32(pos);
        pos += 4;
        if (value <= 0xffff) throw new CborError("non-canonical", "integer not in shortest form");
      } else if (info === 27) {
        need(8);
        const big = view.getBigUint64(pos);
        pos += 8;
        if (big <= 0xffffffffn) throw new CborError("non-canonical", "integer not in shortest form");
        if (big > BigInt(Number.MAX_SAFE_INTEGER)) {
          throw new CborError("unsafe-integer", "integer too large for this page");
        }
        value = Number(big);
      } else {
        throw new CborError("indefinite", "indefinite lengths and reserved values are not used in entries");
      }
      return value;
    }

    // Deterministic key order: shorter encoded key first, then bytewise.
    function keyBefore(a, b) {
      if (a.length !== b.length) return a.length < b.length;
      for (let i = 0; i < a.length; i++) {
        if (a[i] !== b[i]) return a[i] < b[i];
      }
      return false;
    }

    function item(depth) {
      if (depth > MAX_DEPTH) throw new CborError("wrong-type", "nested too deeply");
      need(1);
      const initial = bytes[pos];
      pos += 1;
      const major = initial >> 5;
      const info = initial & 0x1f;
      switch (major) {
        case 0:
          return argument(info);
        case 1:
          return -1 - argument(info);
        case 2: {
          const n = argument(info);
          need(n);
          const out = bytes.slice(pos, pos + n);
          pos += n;
          return out;
        }
        case 3: {
          const n = argument(info);
          need(n);
          let text;
          try {
            text = utf8.decode(bytes.subarray(pos, pos + n));
          } catch (e) {
            throw new CborError("utf8", "text is not valid UTF-8");
          }
          pos += n;
          return text;
        }
        case 4: {
          const n = argument(info);
          need(n); // each item takes at least one byte
          const out = [];
          for (let i = 0; i < n; i++) out.push(item(depth + 1));
          return out;
        }
        case 5: {
          const n = argument(info);
          need(n * 2);
          const out = Object.create(null);
          let previous = null;
          for (let i = 0; i < n; i++) {
            const keyStart = pos;
            if (pos < bytes.length && bytes[pos] >> 5 !== 0) {
              throw new CborError("wrong-key", "map keys must be unsigned integers");
            }
            const key = item(depth + 1);
            const encoded = bytes.subarray(keyStart, pos);
            if (previous !== null && !keyBefore(previous, encoded)) {
              throw new CborError("wrong-key", "map keys are duplicated or out of order");
            }
            previous = encoded;
            out[key] = item(depth + 1);
          }
          return out;
        }
        case 6:
          throw new CborError("wrong-type", "tags are not used in entries");
        default:
          if (info === 20) return false;
          if (info === 21) return true;
          if (info === 22) return null;
          throw new CborError("wrong-type", "floats and other simple values are not used in entries");
      }
    }

    const value = item(0);
    if (pos !== bytes.length) {
      throw new CborError("trailing", "bytes follow the entry");
    }
    return value;
  }

  // The entry of docs/audit-log.md, format version 6: an array of 25 items (the names
  // below, in order; "deferral" is null, [disclose_at (integer or null)] on a deferred
  // access, or [of, opening (32 bytes), lift (32-byte commitment or null)] on a
  // disclosure, returned as {disclose_at} or {of, opening, lift}). Version 5 is its first
  // 24 items, the actor an array [kind, id] and each withheld item an array
  // [field, reason]; "justification" and "official" are 32-byte commitments (or null) to
  // the texts a caller supplied, never the texts; "policy_set" the 32-byte digest of the
  // policy set in force (or null), "claim" null or [legal basis (text or null), justified
  // (boolean)], "terms" null or [agency, valid_from, expires_at, max_uses (or null),
  // data_life (or null), supersedes (text or null)]. Version 4 is its first 21 items.
  // Entries written before version 4 are
  // version 3: an array of the first 20 items, the justification in clear text, no
  // "official"; and before that version 2: the fields of version 3 as a map with the
  // integer keys 0..19 (the actor {0: kind, 1: id}, each withheld item {0: field,
  // 1: reason}). Each version has one form: a map with v = 3, 4 or 5, an array of another
  // length than its version's, an array with v = 2, or an entry of one form holding pairs
  // of the other are rejected. Checks every item and type and returns the entry with named
  // fields (the same object for every version, "official" null before version 4, the last
  // three null before version 5), so the page never shows a field it did not find where
  // the format puts it.
  const NAMES = ["v", "index", "time", "prev", "actor", "initiator", "action", "processing",
    "purpose", "subject", "subject_prev", "requested", "released", "withheld", "legal_basis",
    "legal_reference", "consent_id", "decision", "justification", "review"];
  const NAMES_V4 = NAMES.concat(["official"]);
  const NAMES_V5 = NAMES_V4.concat(["policy_set", "claim", "terms"]);
  const NAMES_V6 = NAMES_V5.concat(["deferral"]);
  const TEXT_OR_NULL = ["purpose", "initiator", "consent_id", "processing", "legal_basis",
    "legal_reference"];
  const COMMITMENTS = ["justification", "official"];
  const FORMS = { 2: "map", 3: "array", 4: "array of 21", 5: "array of 24", 6: "array of 25" };
  const A_FORM = { map: "a map", array: "an array of 20 items", "array of 21": "an array of 21 items",
    "array of 24": "an array of 24 items", "array of 25": "an array of 25 items" };
  const DISCLOSE_ACTION = "access.disclose";

  // A decoded value of the entry's form with exactly names.length items (an array) or the
  // keys 0..names.length-1 (a map), with its values named.
  function named(value, names, what, form) {
    const out = Object.create(null);
    if (form === "array") {
      if (!Array.isArray(value) || value.length !== names.length) {
        throw new CborError("wrong-shape", what + " is not an array of " + names.length + " items");
      }
      names.forEach((name, i) => { out[name] = value[i]; });
      return out;
    }
    if (value === null || typeof value !== "object" || Array.isArray(value) ||
        value instanceof Uint8Array) {
      throw new CborError("wrong-shape", what + " is not a map");
    }
    const keys = Object.keys(value);
    if (keys.length !== names.length) {
      throw new CborError("wrong-shape", what + " is not a map of " + names.length + " pairs");
    }
    if (!names.every((_, i) => String(i) in value)) {
      throw new CborError("wrong-key", what + " does not have the keys 0.." + (names.length - 1));
    }
    names.forEach((name, i) => { out[name] = value[i]; });
    return out;
  }

  // The field rules of docs/audit-log.md, in the order the vault checks them, so that an
  // entry the vault would refuse is refused here too (with the code "rule:" + field).
  const MAX_ENTRY_LEN = 1 << 20;
  const MAX_TEXT_LEN = 4096;
  const MAX_LIST_LEN = 1024;
  const ACTOR_KINDS = ["agency", "citizen", "auditor", "operator", "system"];
  const OPTIONAL_TEXTS = ["initiator", "processing", "purpose", "legal_basis",
    "legal_reference", "consent_id"];
  const utf8Length = (s) => new TextEncoder().encode(s).length;

  function broken(field, rule) {
    return new CborError("rule:" + field, field + " " + rule);
  }

  function checkText(field, s, required) {
    if (required && s.length === 0) throw broken(field, "must not be empty");
    if (utf8Length(s) > MAX_TEXT_LEN) throw broken(field, "is longer than 4096 bytes");
  }

  function checkList(field, items, checkItem) {
    if (items.length > MAX_LIST_LEN) throw broken(field, "has more than 1024 items");
    items.forEach(checkItem);
  }

  function checkRules(m, length) {
    if (length > MAX_ENTRY_LEN) throw broken("entry", "is larger than 1 MiB");
    if (!ACTOR_KINDS.includes(m.actor.kind)) throw broken("actor.kind", "is unknown");
    if (m.actor.kind === "citizen") {
      if (m.actor.id !== "") throw broken("actor.id", "must be empty for a citizen");
    } else {
      checkText("actor.id", m.actor.id, true);
    }
    checkText("action", m.action, true);
    checkText("decision", m.decision, true);
    for (const k of OPTIONAL_TEXTS) {
      if (m[k] !== null) checkText(k, m[k], false);
    }
    if (m.v < 4 && m.justification !== null) checkText("justification", m.justification, false);
    if (m.claim !== null && m.claim.legal_basis !== null) {
      checkText("claim.legal_basis", m.claim.legal_basis, false);
    }
    if (m.terms !== null) {
      checkText("terms.agency", m.terms.agency, true);
      if (m.terms.supersedes !== null) checkText("terms.supersedes", m.terms.supersedes, false);
    }
    if (m.deferral !== null) {
      if (m.subject === null) throw broken("deferral", "is set without a subject");
      if ("disclose_at" in m.deferral) {
        if (m.subject_prev !== null) throw broken("deferral", "is on an entry with a subject_prev");
      } else {
        if (m.deferral.of >= m.index) throw broken("deferral", "names an entry not below the index");
        if (m.action !== DISCLOSE_ACTION) throw broken("deferral", "is a disclosure with another action");
      }
    }
    checkList("requested", m.requested, (s) => checkText("requested", s, true));
    checkList("released", m.released, (s) => checkText("released", s, true));
    checkList("withheld", m.withheld, (w) => {
      checkText("withheld.field", w.field, true);
      checkText("withheld.reason", w.reason, true);
    });
    if (m.subject_prev !== null) {
      if (m.subject === null) throw broken("subject_prev", "is set without a subject");
      if (m.subject_prev >= m.index) throw broken("subject_prev", "is not below the index");
    }
  }

  function decodeEntry(bytes) {
    const top = decode(bytes);
    const length = Array.isArray(top) ? top.length : 0;
    const names = length === NAMES_V6.length ? NAMES_V6 : length === NAMES_V5.length ? NAMES_V5
      : length === NAMES_V4.length ? NAMES_V4 : NAMES;
    const form = Array.isArray(top)
      ? (names === NAMES_V6 ? "array of 25" : names === NAMES_V5 ? "array of 24"
        : names === NAMES_V4 ? "array of 21" : "array")
      : "map";
    const m = named(top, names, "the entry", Array.isArray(top) ? "array" : "map");
    if (!(m.v in FORMS)) throw new CborError("version", "unknown entry format version");
    if (FORMS[m.v] !== form) {
      throw new CborError("version-form", "an entry of format version " + m.v + " must be " +
        A_FORM[FORMS[m.v]] + ", not " + A_FORM[form]);
    }
    const isText = (x) => typeof x === "string";
    const isUint = (x) => typeof x === "number" && Number.isInteger(x) && x >= 0;
    const isTextList = (x) => Array.isArray(x) && x.every(isText);
    if (!(m.prev instanceof Uint8Array) || m.prev.length !== 32) throw new CborError("wrong-type", "bad prev");
    if (!isUint(m.time) || !isUint(m.index)) throw new CborError("wrong-type", "bad time or index");
    const pairForm = form === "map" ? "map" : "array";
    m.actor = named(m.actor, ["kind", "id"], "the actor", pairForm);
    if (!isText(m.actor.id) || !isText(m.actor.kind)) throw new CborError("wrong-type", "bad actor");
    if (!isText(m.action) || !isText(m.decision)) throw new CborError("wrong-type", "bad action or decision");
    if (typeof m.review !== "boolean") throw new CborError("wrong-type", "bad review flag");
    for (const k of TEXT_OR_NULL) {
      if (m[k] !== null && !isText(m[k])) throw new CborError("wrong-type", "bad " + k);
    }
    if (m.v >= 4) {
      for (const k of COMMITMENTS) {
        if (m[k] !== null && (!(m[k] instanceof Uint8Array) || m[k].length !== 32)) {
          throw new CborError("wrong-type", "bad " + k + " commitment");
        }
      }
    } else {
      if (m.justification !== null && !isText(m.justification)) {
        throw new CborError("wrong-type", "bad justification");
      }
      m.official = null;
    }
    if (m.v >= 5) {
      if (m.policy_set !== null && (!(m.policy_set instanceof Uint8Array) || m.policy_set.length !== 32)) {
        throw new CborError("wrong-type", "bad policy_set");
      }
      if (m.claim !== null) {
        m.claim = named(m.claim, ["legal_basis", "justified"], "the claim", "array");
        if (m.claim.legal_basis !== null && !isText(m.claim.legal_basis)) {
          throw new CborError("wrong-type", "bad claim.legal_basis");
        }
        if (typeof m.claim.justified !== "boolean") throw new CborError("wrong-type", "bad claim.justified");
      }
      if (m.terms !== null) {
        m.terms = named(m.terms, ["agency", "valid_from", "expires_at", "max_uses", "data_life",
          "supersedes"], "the terms", "array");
        const t = m.terms;
        if (!isText(t.agency) || !isUint(t.valid_from) || !isUint(t.expires_at) ||
            (t.max_uses !== null && !isUint(t.max_uses)) ||
            (t.data_life !== null && !isUint(t.data_life)) ||
            (t.supersedes !== null && !isText(t.supersedes))) {
          throw new CborError("wrong-type", "bad terms");
        }
      }
    } else {
      m.policy_set = null;
      m.claim = null;
      m.terms = null;
    }
    const isB32 = (x) => x instanceof Uint8Array && x.length === 32;
    if (m.v >= 6 && m.deferral !== null) {
      const d = m.deferral;
      if (Array.isArray(d) && d.length === 1) {
        if (d[0] !== null && !isUint(d[0])) throw new CborError("wrong-type", "bad deferral.disclose_at");
        m.deferral = { disclose_at: d[0] };
      } else if (Array.isArray(d) && d.length === 3) {
        if (!isUint(d[0]) || !isB32(d[1]) || (d[2] !== null && !isB32(d[2]))) {
          throw new CborError("wrong-type", "bad disclosure");
        }
        m.deferral = { of: d[0], opening: d[1], lift: d[2] };
      } else {
        throw new CborError("wrong-shape", "the deferral is not an array of 1 or 3 items");
      }
    } else {
      m.deferral = null;
    }
    if (m.subject !== null && (!(m.subject instanceof Uint8Array) || m.subject.length !== 32)) {
      throw new CborError("wrong-type", "bad subject");
    }
    if (m.subject_prev !== null && !isUint(m.subject_prev)) throw new CborError("wrong-type", "bad subject_prev");
    if (!isTextList(m.released) || !isTextList(m.requested)) throw new CborError("wrong-type", "bad field list");
    if (!Array.isArray(m.withheld)) throw new CborError("wrong-type", "bad withheld list");
    m.withheld = m.withheld.map((w) => named(w, ["field", "reason"], "a withheld item", pairForm));
    if (!m.withheld.every((w) => isText(w.field) && isText(w.reason))) {
      throw new CborError("wrong-type", "bad withheld list");
    }
    checkRules(m, bytes.length);
    return m;
  }

  // The commitment of docs/audit-log.md ("Free texts") to `text` as the entry field
  // `field` ("justification", "official" or "lift") under `salt` (32 bytes): SHA-256 of the label,
  // the field name and a NUL, the salt, the text's UTF-8 length (4 bytes, big-endian) and
  // the text. Resolves to the 32 bytes.
  const COMMITMENT_LABEL = "vault audit text commitment v1\0";
  async function textCommitment(field, salt, text) {
    const enc = new TextEncoder();
    const label = enc.encode(COMMITMENT_LABEL + field + "\0");
    const body = enc.encode(text);
    const buf = new Uint8Array(label.length + salt.length + 4 + body.length);
    buf.set(label, 0);
    buf.set(salt, label.length);
    new DataView(buf.buffer).setUint32(label.length + salt.length, body.length);
    buf.set(body, label.length + salt.length + 4);
    return new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
  }

  // The deferred tag of docs/audit-log.md ("Deferred disclosure"): SHA-256 of the label and
  // a NUL, the citizen's 32-byte tag and the 32-byte opening. Resolves to the 32 bytes.
  const DEFERRED_TAG_LABEL = "vault deferred subject v1\0";
  async function deferredTag(tag, opening) {
    const label = new TextEncoder().encode(DEFERRED_TAG_LABEL);
    const buf = new Uint8Array(label.length + 64);
    buf.set(label, 0);
    buf.set(tag, label.length);
    buf.set(opening, label.length + 32);
    return new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
  }

  window.vaultCbor = Object.freeze({ decode, decodeEntry, textCommitment, deferredTag, CborError });
})();
