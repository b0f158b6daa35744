// Verification of the audit log in the browser, with WebCrypto only (no library, nothing
// fetched from elsewhere):
//   - RFC 9162 leaf and node hashes, inclusion proofs (section 2.1.3.2) and consistency
//     proofs (section 2.1.4.2);
//   - C2SP signed-note v1.0.0 signatures with Ed25519 and the note verifier key
//     `<name>+<8 hex key id>+<base64(0x01 || public key)>`;
//   - C2SP tlog-checkpoint v1.0.0 bodies: origin, tree size, base64 root.
// Byte formats: docs/audit-log.md. Everything here is exposed as `window.vaultVerify` so
// that tests (and curious citizens, from the browser console) can call it.
"use strict";

(function () {
  const subtle = window.crypto && window.crypto.subtle;
  const enc = new TextEncoder();

  class VerifyError extends Error {}

  function b64decode(text) {
    if (text instanceof Uint8Array) return text;
    if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
      throw new VerifyError("not standard base64");
    }
    let bin;
    try {
      bin = atob(text);
    } catch (e) {
      throw new VerifyError("not standard base64");
    }
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function b64encode(bytes) {
    let bin = "";
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin);
  }

  function hex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function concat(...parts) {
    const n = parts.reduce((s, p) => s + p.length, 0);
    const out = new Uint8Array(n);
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }

  function equal(a, b) {
    if (a.length !== b.length) return false;
    let d = 0;
    for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
    return d === 0;
  }

  async function sha256(bytes) {
    if (!subtle) throw new VerifyError("this browser has no WebCrypto (is the page on https?)");
    return new Uint8Array(await subtle.digest("SHA-256", bytes));
  }

  const leafHash = (leaf) => sha256(concat(Uint8Array.of(0), leaf));
  const nodeHash = (left, right) => sha256(concat(Uint8Array.of(1), left, right));

  function hashList(proof) {
    if (!Array.isArray(proof)) throw new VerifyError("a proof is a list of hashes");
    return proof.map((p) => {
      const h = b64decode(p);
      if (h.length !== 32) throw new VerifyError("a proof hash is not 32 bytes");
      return h;
    });
  }

  // Integers here are tree sizes and indices (below 2^53): halve with arithmetic, not
  // with 32-bit bit operators.
  const isOdd = (x) => x % 2 === 1;
  const half = (x) => Math.floor(x / 2);
  const isCount = (x) => Number.isSafeInteger(x) && x >= 0;
  function isPowerOfTwo(x) {
    while (x > 1 && x % 2 === 0) x /= 2;
    return x === 1;
  }

  // RFC 9162 2.1.3.2. `leaf` is the exact leaf bytes; returns {ok, reason}.
  async function inclusion({ leaf, index, treeSize, proof, root }) {
    try {
      if (!isCount(index) || !isCount(treeSize) || index >= treeSize) {
        throw new VerifyError("the entry's index is not inside the signed tree");
      }
      const path = hashList(proof);
      const want = b64decode(root);
      let fn = index;
      let sn = treeSize - 1;
      let r = await leafHash(b64decode(leaf));
      for (const p of path) {
        if (sn === 0) throw new VerifyError("the proof is too long");
        if (isOdd(fn) || fn === sn) {
          r = await nodeHash(p, r);
          if (!isOdd(fn)) {
            while (!isOdd(fn) && fn !== 0) {
              fn = half(fn);
              sn = half(sn);
            }
          }
        } else {
          r = await nodeHash(r, p);
        }
        fn = half(fn);
        sn = half(sn);
      }
      if (sn !== 0) throw new VerifyError("the proof is too short");
      if (!equal(r, want)) throw new VerifyError("the proof does not lead to the signed root");
      return { ok: true };
    } catch (e) {
      return { ok: false, reason: e.message };
    }
  }

  // RFC 9162 2.1.4.2: the tree of size `from` with root `fromRoot` is a prefix of the tree
  // of size `to` with root `toRoot`. Returns {ok, reason}.
  async function consistency({ from, to, fromRoot, toRoot, proof }) {
    try {
      const r1 = b64decode(fromRoot);
      const r2 = b64decode(toRoot);
      const path = hashList(proof);
      if (!isCount(from) || !isCount(to) || from > to) {
        throw new VerifyError("the log is now smaller than when you last checked it");
      }
      if (from === to) {
        if (path.length !== 0) throw new VerifyError("a proof between equal sizes must be empty");
        if (!equal(r1, r2)) throw new VerifyError("the log's root changed at the same size");
        return { ok: true };
      }
      if (from === 0) throw new VerifyError("no consistency proof from an empty tree");
      if (path.length === 0) throw new VerifyError("the consistency proof is empty");
      let p = path;
      // `from` a power of two: its root is the first node of the path.
      if (isPowerOfTwo(from)) p = [r1, ...path];
      let fn = from - 1;
      let sn = to - 1;
      while (isOdd(fn)) {
        fn = half(fn);
        sn = half(sn);
      }
      let fr = p[0];
      let sr = p[0];
      for (const c of p.slice(1)) {
        if (sn === 0) throw new VerifyError("the consistency proof is too long");
        if (isOdd(fn) || fn === sn) {
          fr = await nodeHash(c, fr);
          sr = await nodeHash(c, sr);
          if (!isOdd(fn)) {
            while (!isOdd(fn) && fn !== 0) {
              fn = half(fn);
              sn = half(sn);
            }
          }
        } else {
          sr = await nodeHash(sr, c);
        }
        fn = half(fn);
        sn = half(sn);
      }
      if (sn !== 0) throw new VerifyError("the consistency proof is too short");
      if (!equal(fr, r1)) throw new VerifyError("the log no longer contains what you saw before");
      if (!equal(sr, r2)) throw new VerifyError("the consistency proof does not lead to the new root");
      return { ok: true };
    } catch (e) {
      return { ok: false, reason: e.message };
    }
  }

  // `<name>+<8 hex>+<base64(0x01 || 32-byte key)>`, with its key id checked.
  async function parseKey(text) {
    // name + id + key, split at the first two `+` (base64 may contain `+` itself).
    const m = /^([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/=]+)$/.exec(String(text).trim());
    if (!m) throw new VerifyError("the published log key is not a note verifier key");
    const [, name, idHex, keyB64] = m;
    const raw = b64decode(keyB64);
    if (raw.length !== 33 || raw[0] !== 0x01) {
      throw new VerifyError("the published log key is not an Ed25519 key");
    }
    const id = (await sha256(concat(enc.encode(name), Uint8Array.of(0x0a), raw))).slice(0, 4);
    if (hex(id) !== idHex) throw new VerifyError("the published log key's id does not match the key");
    return { name, id, publicKey: raw.slice(1) };
  }

  let ed25519Support = null;
  async function ed25519Available() {
    if (ed25519Support !== null) return ed25519Support;
    try {
      // A fixed valid public key (RFC 8032 test 1).
      const pk = b64decode("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
      await subtle.importKey("raw", pk, { name: "Ed25519" }, false, ["verify"]);
      ed25519Support = true;
    } catch (e) {
      ed25519Support = false;
    }
    return ed25519Support;
  }

  // Verifies a signed note with `keyText`; returns the signed text (what the signature
  // covers). Throws VerifyError with a reason otherwise.
  async function verifyNote(note, keyText) {
    if (!(await ed25519Available())) {
      throw new VerifyError("cannot verify in this browser: it has no Ed25519 in WebCrypto");
    }
    const key = await parseKey(keyText);
    if (typeof note !== "string" || !note.endsWith("\n")) throw new VerifyError("malformed signed note");
    const split = note.lastIndexOf("\n\n");
    if (split < 0) throw new VerifyError("the signed note has no signatures");
    const text = note.slice(0, split + 1);
    const lines = note.slice(split + 2, -1).split("\n");
    if (lines.length > 100) throw new VerifyError("too many signature lines");
    const cryptoKey = await subtle.importKey("raw", key.publicKey, { name: "Ed25519" }, false, ["verify"]);
    let verified = false;
    for (const line of lines) {
      if (!line.startsWith("\u2014 ")) throw new VerifyError("malformed signature line");
      const fields = line.slice(2).split(" ");
      if (fields.length !== 2 || fields[0] === "") throw new VerifyError("malformed signature line");
      const sig = b64decode(fields[1]);
      if (sig.length < 5) throw new VerifyError("malformed signature line");
      if (fields[0] !== key.name || !equal(sig.slice(0, 4), key.id)) continue; // a cosigner
      if (sig.length !== 68) throw new VerifyError("the log's signature has the wrong length");
      const ok = await subtle.verify({ name: "Ed25519" }, cryptoKey, sig.slice(4), enc.encode(text));
      if (!ok) throw new VerifyError("the checkpoint's signature is not valid");
      verified = true;
    }
    if (!verified) throw new VerifyError("the checkpoint is not signed by the log's key");
    return { text, key };
  }

  // A C2SP tlog-checkpoint body, exactly three lines (the vault writes no extensions).
  function parseCheckpoint(text) {
    const lines = text.split("\n");
    if (lines.length !== 4 || lines[3] !== "") throw new VerifyError("malformed checkpoint");
    const [origin, sizeText, rootText] = lines;
    if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeText)) throw new VerifyError("malformed checkpoint size");
    const size = Number(sizeText);
    if (!Number.isSafeInteger(size)) throw new VerifyError("checkpoint size too large");
    const root = b64decode(rootText);
    if (root.length !== 32) throw new VerifyError("malformed checkpoint root");
    return { origin, size, root };
  }

  // Signature, then body; the origin must be the key's name. Returns {origin, size, root,
  // keyId} or throws VerifyError.
  async function checkpoint(note, keyText) {
    const { text, key } = await verifyNote(note, keyText);
    const cp = parseCheckpoint(text);
    if (cp.origin !== key.name) throw new VerifyError("the checkpoint is for another log");
    return { origin: cp.origin, size: cp.size, root: cp.root, keyId: hex(key.id) };
  }


  // ---------- witnesses (C2SP tlog-cosignature v1, tlog-policy) ----------

  // A witness key `<name>+<8 hex>+<base64(0x04 || 32-byte key)>`, its id checked.
  async function parseCosignatureKey(text) {
    const m = /^([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/=]+)$/.exec(String(text).trim());
    if (!m) throw new VerifyError("a witness key in the policy is malformed");
    const [, name, idHex, keyB64] = m;
    const raw = b64decode(keyB64);
    if (raw.length !== 33 || raw[0] !== 0x04) throw new VerifyError("a witness key is not a cosignature/v1 key");
    const id = (await sha256(concat(enc.encode(name), Uint8Array.of(0x0a), raw))).slice(0, 4);
    if (hex(id) !== idHex) throw new VerifyError("a witness key's id does not match the key");
    return { name, id, publicKey: raw.slice(1) };
  }

  // A C2SP tlog-policy: `log`, `witness <name> <vkey> [url]`, `group <name> all|any|k
  // <member>...`, `quorum <name>|none`; groups and the quorum name earlier definitions.
  async function parsePolicy(text) {
    const policy = { logs: [], witnesses: [], groups: new Map(), quorum: undefined };
    const defined = (n) => policy.witnesses.some((w) => w.label === n) || policy.groups.has(n);
    for (const raw of String(text).split("\n")) {
      const words = raw.split(/[ \t]+/).filter((w) => w !== "");
      if (!words.length || words[0].startsWith("#")) continue;
      const [kw, ...rest] = words;
      if (kw === "log") {
        if (rest.length < 1 || rest.length > 2) throw new VerifyError("malformed log line in the witness policy");
        policy.logs.push(rest[0]);
      } else if (kw === "witness") {
        if (rest.length < 2 || rest.length > 3 || rest[0] === "none" || defined(rest[0])) {
          throw new VerifyError("malformed witness line in the witness policy");
        }
        const key = await parseCosignatureKey(rest[1]);
        policy.witnesses.push(Object.assign({ label: rest[0] }, key));
      } else if (kw === "group") {
        if (rest.length < 3 || rest[0] === "none" || defined(rest[0])) throw new VerifyError("malformed group line in the witness policy");
        const members = rest.slice(2);
        if (!members.every(defined) || new Set(members).size !== members.length) {
          throw new VerifyError("a group of the witness policy names an unknown member");
        }
        let k;
        if (rest[1] === "all") k = members.length;
        else if (rest[1] === "any") k = 1;
        else if (/^[1-9][0-9]*$/.test(rest[1]) && Number(rest[1]) <= members.length) k = Number(rest[1]);
        else throw new VerifyError("a group of the witness policy has a bad threshold");
        policy.groups.set(rest[0], { k, members });
      } else if (kw === "quorum") {
        if (rest.length !== 1 || policy.quorum !== undefined) throw new VerifyError("the witness policy needs exactly one quorum line");
        if (rest[0] !== "none" && !defined(rest[0])) throw new VerifyError("the witness policy's quorum names nothing defined");
        policy.quorum = rest[0] === "none" ? null : rest[0];
      } else {
        throw new VerifyError("unknown line in the witness policy");
      }
    }
    if (policy.quorum === undefined) throw new VerifyError("the witness policy has no quorum line");
    return policy;
  }

  function quorumMet(policy, cosigned) {
    const met = (name, depth) => {
      const g = policy.groups.get(name);
      if (!g) return cosigned.has(name);
      if (depth > 64) return false;
      return g.members.filter((m) => met(m, depth + 1)).length >= g.k;
    };
    return policy.quorum === null || met(policy.quorum, 0);
  }

  // Checks a published checkpoint: the log's signature with `logKeyText`, then each
  // witness's cosignature/v1 (Ed25519 over "cosignature/v1\ntime T\n" + the note's text).
  // Returns {size, root, cosignedBy: [witness names], quorumMet, witnesses: n}.
  async function witnessed(note, policyText, logKeyText) {
    const policy = await parsePolicy(policyText);
    if (policy.logs.length && !policy.logs.some((l) => l.trim() === String(logKeyText).trim())) {
      throw new VerifyError("the witness policy is for another log");
    }
    const cp = await checkpoint(note, logKeyText);
    const split = note.lastIndexOf("\n\n");
    const text = note.slice(0, split + 1);
    const lines = note.slice(split + 2, -1).split("\n");
    const cosignedBy = [];
    for (const w of policy.witnesses) {
      const cryptoKey = await subtle.importKey("raw", w.publicKey, { name: "Ed25519" }, false, ["verify"]);
      for (const line of lines) {
        const fields = line.slice(2).split(" ");
        const sig = b64decode(fields[1]);
        if (fields[0] !== w.name || !equal(sig.slice(0, 4), w.id)) continue;
        if (sig.length !== 76) throw new VerifyError("the cosignature of " + w.name + " has the wrong length");
        let time = 0n;
        for (const b of sig.slice(4, 12)) time = (time << 8n) | BigInt(b);
        const msg = enc.encode("cosignature/v1\ntime " + time.toString() + "\n" + text);
        const ok = await subtle.verify({ name: "Ed25519" }, cryptoKey, sig.slice(12), msg);
        if (!ok) throw new VerifyError("the cosignature of " + w.name + " is not valid");
        if (!cosignedBy.includes(w.label)) cosignedBy.push(w.label);
      }
    }
    return {
      size: cp.size,
      root: cp.root,
      cosignedBy: cosignedBy.map((label) => policy.witnesses.find((w) => w.label === label).name),
      quorumMet: quorumMet(policy, new Set(cosignedBy)),
      witnesses: policy.witnesses.length,
      needsWitnesses: policy.quorum !== null,
    };
  }

  window.vaultVerify = Object.freeze({
    VerifyError,
    b64decode,
    b64encode,
    hex,
    sha256,
    leafHash,
    nodeHash,
    inclusion,
    consistency,
    parseKey,
    ed25519Available,
    verifyNote,
    parseCheckpoint,
    checkpoint,
    parsePolicy,
    witnessed,
  });
})();
