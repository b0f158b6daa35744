// The citizen page: sign-in, access history verified in the browser, consents, pending
// requests, export and erasure. Plain JavaScript, no build step, no library. Data is put
// on the page with textContent only. The token lives in sessionStorage (this tab only);
// the last verified checkpoint lives in localStorage, so the next visit checks that the
// log only grew since (a consistency proof).
"use strict";

(function () {
  const V = window.vaultVerify;
  const CBOR = window.vaultCbor;
  const TOKEN_KEY = "vault.token";
  const CHECKPOINT_KEY = "vault.checkpoint.v1";
  const PAGE_SIZE = 50;

  const $ = (id) => document.getElementById(id);

  const state = {
    token: null,
    vocab: { agencies: {}, purposes: {}, fields: {}, categories: {}, legal_bases: {} },
    consents: [],
    requests: [],
    entries: [], // {index, leafB64, proof, checkpoint, status, reason, entry}
    notifications: [], // the same, with `said`: the event type the vault gave
    notificationsNext: null,
    // Verified disclosure entries seen so far, by the index of the deferred access each
    // discloses: {subject, opening, index}. The history is newest first, so a disclosure
    // is always read before the access it discloses.
    disclosures: new Map(),
    checkpoints: [], // verified checkpoints of the pages loaded: {size, root, keyId}
    next: null,
    integrityProblems: [],
  };

  // ---------- small DOM helpers ----------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("data-")) node.setAttribute(k, v);
      else if (k.startsWith("aria-") || k === "role" || k === "type") node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function setStatus(text, kind) {
    const s = $("status");
    s.textContent = text || "";
    s.className = "notice" + (kind ? " " + kind : "");
    s.hidden = !text;
  }

  // ---------- plain words ----------

  const agencyName = (id) => state.vocab.agencies[id] || id;
  const purposeText = (code) => (code ? state.vocab.purposes[code] || code.replace(/_/g, " ") : "");
  function fieldText(name) {
    const d = state.vocab.fields[name];
    if (d) return d;
    const [cat, field] = String(name).split(".");
    return field ? field.replace(/_/g, " ") + " (" + cat + ")" : String(name);
  }
  function categoryText(id) {
    return state.vocab.categories[id] || id;
  }

  const LEGAL_BASIS = {
    consent: "Your consent",
    legal_obligation: "A legal obligation of the agency",
    public_task: "A public task of the agency, set by law",
    vital_interest: "Emergency: to protect someone's life or health",
  };
  function legalBasisText(codes) {
    return String(codes)
      .split(",")
      .map((c) => {
        const words = LEGAL_BASIS[c] || c.replace(/_/g, " ");
        const lb = state.vocab.legal_bases[c];
        return lb && lb.article ? words + " (" + lb.article + ")" : words;
      })
      .join("; ");
  }

  const REASONS = {
    no_consent: "no consent or law covers it",
    no_legal_basis: "no consent or law covers it",
    consent_expired: "your consent had expired",
    consent_revoked: "you had withdrawn your consent",
    not_found: "not held by the vault",
    unknown_field: "not a field the vault knows",
    purpose_not_allowed: "the agency may not claim this purpose",
    justification_required: "an emergency access needs a justification",
  };
  const reasonText = (r) => REASONS[r] || String(r).replace(/_/g, " ");

  const DECISIONS = {
    granted: "Data released",
    partial: "Partly released",
    refused: "Refused",
    done: "Done",
  };

  // A citizen entry names the public id of the token used (its `initiator`); the
  // `token.issue` entry about you names the same id. The date comes from that verified
  // entry when this page has loaded it.
  function tokenText(id) {
    const issue = state.entries.find((it) => it.entry && it.entry.action === "token.issue" && it.entry.initiator === id);
    return "token " + id + (issue ? ", issued by the vault's operator on " + when(issue.entry.time) : ", issued by the vault's operator");
  }

  function actorText(actor) {
    switch (actor.kind) {
      case "agency":
        return agencyName(actor.id);
      case "citizen":
        return "You";
      case "operator":
        return "The vault's operator";
      case "auditor":
        return "An auditor";
      case "system":
        return "The vault";
      default:
        return actor.id || actor.kind;
    }
  }

  function headline(e) {
    const who = actorText(e.actor);
    switch (e.action) {
      case "citizen.view_records":
        return "Your records were read with your token";
      case "citizen.export":
        return "All your data was exported with your token";
      case "token.issue":
        return who + " issued a token that acts as you";
      case "access":
        return who + " asked for your data";
      case "record.write":
      case "record.import": {
        const cats = [...new Set(e.requested.concat(e.released).map((f) => f.split(".")[0]))];
        const what = cats.length ? cats.map(categoryText).join(", ") : "your record";
        return who + " updated: " + what;
      }
      case "consent.request":
        return who + " asked for your consent";
      case "consent.grant":
        return who === "You" ? "You gave consent" : who + ": consent given";
      case "consent.revoke":
        return who === "You" ? "You withdrew a consent" : who + ": consent withdrawn";
      case "consent.deny":
        return who === "You" ? "You declined a consent request" : who + ": consent request declined";
      case "consent.expire":
        return "A consent expired";
      case "erasure":
        return "Your data was erased";
      case "access.disclose":
        return e.actor.kind === "operator"
          ? "A covert access to your data is disclosed: its secrecy was lifted"
          : "A covert access to your data is disclosed: its secrecy period ended";
      default:
        return who + ": " + e.action.replace(/[._]/g, " ");
    }
  }

  function when(ms) {
    const d = new Date(ms);
    return d.toLocaleString();
  }
  function whenText(rfc3339) {
    if (!rfc3339) return "";
    const d = new Date(rfc3339);
    return Number.isNaN(d.getTime()) ? rfc3339 : d.toLocaleString();
  }

  function consentText(id) {
    const c = state.consents.find((x) => x.id === id);
    if (!c) return "a consent you gave (no longer listed)";
    return "your consent to " + c.agency_name + " for: " + (c.purpose_description || purposeText(c.purpose)) +
      (c.granted_at ? ", given " + whenText(c.granted_at) : "");
  }

  // ---------- API ----------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, options) {
    const opts = Object.assign({ method: "GET" }, options || {});
    const headers = { accept: "application/json" };
    if (state.token) headers.authorization = "Bearer " + state.token;
    if (opts.body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(path, {
      method: opts.method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
    let body = null;
    try {
      body = await res.json();
    } catch (e) {
      body = null;
    }
    if (!res.ok) {
      const msg = body && body.error && body.error.message ? body.error.message : "the vault answered " + res.status;
      throw new ApiError(res.status, msg);
    }
    return body;
  }

  // The text of a public route, or null when it answers 404.
  async function publicText(path) {
    const res = await fetch(path, { credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer" });
    if (res.status === 404) return null;
    const body = await res.text();
    if (!res.ok) {
      let msg = "the vault answered " + res.status;
      try {
        msg = JSON.parse(body).error.message || msg;
      } catch (e) {
        // Not the API's error shape: keep the status.
      }
      throw new ApiError(res.status, msg);
    }
    return body;
  }

  // ---------- downloads (object URLs; nothing leaves the browser) ----------

  function download(filename, text, type) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const a = el("a", { href: url, download: filename, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  // ---------- the log's checkpoints ----------

  function storedCheckpoint() {
    try {
      const s = JSON.parse(localStorage.getItem(CHECKPOINT_KEY) || "null");
      if (s && Number.isSafeInteger(s.size) && typeof s.root === "string" && typeof s.key === "string") return s;
    } catch (e) {
      // A damaged entry is treated as none; the next verified checkpoint replaces it.
    }
    return null;
  }

  function integrityProblem(text) {
    state.integrityProblems.push(text);
    renderIntegrity();
  }

  // Verifies a page's checkpoint: signature, then that the log only grew since the last
  // checkpoint this browser verified (pinned key, consistency proof). Returns the parsed
  // checkpoint, or throws with a reason.
  async function acceptCheckpoint(note, key) {
    const cp = await V.checkpoint(note, key);
    const old = storedCheckpoint();
    const root = V.b64encode(cp.root);
    if (old) {
      if (old.key !== key) {
        integrityProblem("The log's signing key changed since your last visit (it was " + (old.key.split("+")[1] || "?") +
          ", now " + cp.keyId + "). The history cannot be trusted until this is explained.");
        throw new V.VerifyError("signed with a key other than the one this browser saw before");
      }
      if (old.size > cp.size || (old.size === cp.size && old.root !== root)) {
        integrityProblem("The log shrank or changed since your last visit (size " + old.size + " then, " +
          cp.size + " now). The vault may have rewritten history.");
        throw new V.VerifyError("the log is not consistent with what this browser saw before");
      }
      if (old.size < cp.size) {
        let proof;
        try {
          proof = await api("/v1/audit/proof/consistency?from=" + old.size + "&to=" + cp.size);
        } catch (e) {
          integrityProblem("The vault did not prove that the log only grew since your last visit (" + e.message + ").");
          throw new V.VerifyError("no consistency proof");
        }
        const r = await V.consistency({ from: old.size, to: cp.size, fromRoot: old.root, toRoot: root, proof: proof.hashes });
        if (!r.ok) {
          integrityProblem("The log is NOT consistent with what this browser verified on your last visit (" + r.reason +
            "). The vault may have rewritten history: keep this page and contact the data protection authority.");
          throw new V.VerifyError("consistency proof failed: " + r.reason);
        }
      }
    }
    if (!old || old.size < cp.size) {
      localStorage.setItem(CHECKPOINT_KEY, JSON.stringify({ key, size: cp.size, root, verified_at: Date.now(), from: old ? old.size : null }));
    }
    state.checkpoints.push({ size: cp.size, root, keyId: cp.keyId, grewFrom: old ? old.size : null });
    return { size: cp.size, root: cp.root, keyId: cp.keyId };
  }

  // Checks who vouched for the log: the published checkpoint's cosignatures against the
  // published witness policy, and that the checkpoint the history was proven against is
  // consistent with it (the same log the witnesses saw).
  async function checkWitnesses(cp, key) {
    let policyText;
    try {
      policyText = await publicText("/v1/audit/witness-policy");
    } catch (e) {
      state.witness = { problem: "the witness policy could not be read (" + e.message + ")" };
      return;
    }
    if (policyText === null) {
      state.witness = { none: true };
      return;
    }
    let w;
    try {
      const note = await publicText("/v1/audit/checkpoint");
      if (note === null) throw new V.VerifyError("no published checkpoint");
      w = await V.witnessed(note, policyText, key);
    } catch (e) {
      state.witness = null;
      integrityProblem("No checkpoint of this log confirmed by its witnesses could be checked (" + e.message +
        "). Nobody independent has vouched that you see the same log as everyone else.");
      return;
    }
    if (w.needsWitnesses && !w.quorumMet) {
      integrityProblem("The published checkpoint is cosigned by " + w.cosignedBy.length + " of the " + w.witnesses +
        " witnesses, fewer than the vault's own policy requires. Nobody independent has vouched for this log.");
      return;
    }
    const wRoot = V.b64encode(w.root);
    const hRoot = V.b64encode(cp.root);
    let r = { ok: wRoot === hRoot || w.size !== cp.size, reason: "same size, another root" };
    if (r.ok && w.size !== cp.size) {
      const [from, to, fromRoot, toRoot] = w.size < cp.size ? [w.size, cp.size, wRoot, hRoot] : [cp.size, w.size, hRoot, wRoot];
      if (from === 0) {
        r = { ok: true };
      } else {
        try {
          const proof = await api("/v1/audit/proof/consistency?from=" + from + "&to=" + to);
          r = await V.consistency({ from, to, fromRoot, toRoot, proof: proof.hashes });
        } catch (e) {
          r = { ok: false, reason: e.message };
        }
      }
    }
    if (!r.ok) {
      integrityProblem("The log shown to you is NOT the one its witnesses confirmed (" + r.reason +
        "). The vault may be showing you a different history: keep this page and contact the data protection authority.");
      return;
    }
    state.witness = { names: w.cosignedBy, size: w.size, behind: Math.max(0, cp.size - w.size) };
  }

  function renderIntegrity() {
    const box = $("integrity");
    box.replaceChildren();
    if (state.integrityProblems.length) {
      box.className = "notice warning";
      box.setAttribute("role", "alert");
      box.append(el("strong", { text: "Warning: the log failed a check." }));
      const ul = el("ul");
      for (const p of state.integrityProblems) ul.append(el("li", { text: p }));
      box.append(ul);
      return;
    }
    box.removeAttribute("role");
    const last = state.checkpoints[state.checkpoints.length - 1];
    if (!last) {
      box.className = "notice";
      box.hidden = true;
      return;
    }
    box.hidden = false;
    box.className = "notice ok";
    const failed = state.entries.filter((e) => e.status === "failed").length;
    const ok = state.entries.filter((e) => e.status === "ok").length;
    let text = "Your browser checked the log's signature (key " + last.keyId + ", " + last.size + " entries in all)";
    text += last.grewFrom === null ? ". This is your first visit from this browser: later visits check that the log only grew."
      : ", and that it only grew since your last visit (from " + last.grewFrom + " entries).";
    text += " " + ok + " of your entries verified" + (failed ? ", " + failed + " FAILED." : ".");
    const w = state.witness;
    if (w && w.names) {
      const n = w.names.length;
      text += " " + (n === 1 ? "1 independent witness" : n + " independent witnesses") + " (" + w.names.join(", ") +
        ") confirmed this is the same log everyone sees" +
        (w.behind ? " (up to entry " + w.size + "; the " + w.behind + " newer entries await their confirmation)." : ".");
    } else if (w && w.none) {
      text += " This vault has no independent witnesses: only the vault itself vouches that everyone sees the same log.";
    } else if (w && w.problem) {
      text += " Who vouched for the log could not be checked: " + w.problem + ".";
    }
    if (failed) box.className = "notice warning";
    box.append(el("span", { text }));
  }

  // ---------- history ----------

  async function verifyEntry(item, cp, proofOverride) {
    const proof = proofOverride || item.proof;
    let leaf;
    try {
      leaf = V.b64decode(item.leafB64);
    } catch (e) {
      return { status: "failed", reason: "the entry's bytes are not base64" };
    }
    const inc = await V.inclusion({ leaf, index: item.index, treeSize: cp.size, proof, root: cp.root });
    if (!inc.ok) return { status: "failed", reason: inc.reason };
    let entry;
    try {
      entry = CBOR.decodeEntry(leaf);
    } catch (e) {
      return { status: "failed", reason: "the verified bytes are not a valid entry (" + e.message + ")" };
    }
    if (entry.index !== item.index) {
      return { status: "failed", reason: "the entry says it is at position " + entry.index + ", not " + item.index };
    }
    return { status: "ok", entry };
  }

  // The free texts of a version-4 entry (docs/audit-log.md, "Free texts"): the leaf holds
  // a commitment to each (items "official" and "justification"), the history sends each
  // text with its salt. A text is shown only when it hashes to the commitment in the
  // leaf; otherwise the card says so instead. Returns {field: {ok, text} or {ok, reason}}.
  const hexBytes = (hex) => Uint8Array.from(hex.match(/../g) || [], (b) => parseInt(b, 16));
  const sameBytes = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  async function checkTexts(entry, texts) {
    const out = Object.create(null);
    if (!entry || entry.v < 4) return out;
    for (const field of ["official", "justification", "lift"]) {
      const commitment = field === "lift"
        ? (entry.deferral && "of" in entry.deferral ? entry.deferral.lift : null)
        : entry[field];
      if (commitment === null) continue;
      const t = (Array.isArray(texts) ? texts : []).find((x) => x && x.field === field);
      if (!t || typeof t.text !== "string" || typeof t.salt !== "string" || !/^[0-9a-f]{64}$/.test(t.salt)) {
        out[field] = { ok: false, reason: "the log holds a commitment to a text the vault did not send" };
        continue;
      }
      const got = await CBOR.textCommitment(field, hexBytes(t.salt), t.text);
      out[field] = sameBytes(got, commitment) ? { ok: true, text: t.text }
        : { ok: false, reason: "the text the vault sent does not match the commitment in the log, so it is not shown" };
    }
    return out;
  }

  // Deferred disclosure (docs/audit-log.md): a disclosure entry (about you, in your
  // chain) names the covert access it discloses and the opening of its tag; that access
  // is shown as verified only if such a verified disclosure opens its tag with your tag.
  async function checkDeferral(item) {
    const d = item.entry.deferral;
    if (d === null) return;
    if ("of" in d) {
      state.disclosures.set(d.of, { subject: item.entry.subject, opening: d.opening, index: item.index });
      return;
    }
    const by = state.disclosures.get(item.index);
    if (!by) {
      item.status = "failed";
      item.reason = "a covert access in your history without a verified disclosure naming it";
      item.unverifiedEntry = item.entry;
      item.entry = null;
      return;
    }
    const tag = await CBOR.deferredTag(by.subject, by.opening);
    if (!sameBytes(tag, item.entry.subject)) {
      item.status = "failed";
      item.reason = "the disclosure (entry " + by.index + ") does not link this access to you";
      item.unverifiedEntry = item.entry;
      item.entry = null;
    }
  }


  // A page of entries with proofs (the history's or the notifications'): its checkpoint
  // accepted, each entry verified against it, and what could only be decoded kept apart as
  // unverified (nothing unverified is shown as if it were: the card says so). Returns the
  // checkpoint (null if it did not verify), why not, whether this browser cannot verify,
  // and the items, each beside the raw entry it came from.
  async function verifyPage(h) {
    let cp = null;
    let cpFailure = null;
    try {
      cp = await acceptCheckpoint(h.checkpoint, h.key);
      if (cp.size !== h.tree_size) throw new V.VerifyError("the tree size beside the checkpoint differs from the signed one");
    } catch (e) {
      cpFailure = e.message;
      cp = null;
    }
    const unsupported = !(await V.ed25519Available());
    const items = [];
    for (const raw of h.entries) {
      const item = { index: raw.index, leafB64: raw.leaf, proof: raw.proof, checkpoint: cp, status: "pending", reason: null, entry: null };
      if (unsupported) {
        item.status = "unavailable";
        item.reason = "cannot verify in this browser: it has no Ed25519 signatures in WebCrypto";
      } else if (!cp) {
        item.status = "failed";
        item.reason = "the log's signed checkpoint did not verify: " + cpFailure;
      } else {
        const r = await verifyEntry(item, cp);
        item.status = r.status;
        item.reason = r.reason || null;
        item.entry = r.entry || null;
        if (item.entry) await checkDeferral(item);
      }
      if (!item.entry) {
        try {
          item.unverifiedEntry = CBOR.decodeEntry(V.b64decode(raw.leaf));
        } catch (e) {
          item.unverifiedEntry = null;
        }
      }
      items.push([raw, item]);
    }
    return { cp, cpFailure, unsupported, items };
  }

  async function loadHistory(start) {
    const q = "/v1/me/access-history?limit=" + PAGE_SIZE + (start === null || start === undefined ? "" : "&start=" + start);
    const h = await api(q);
    const { cp, cpFailure, unsupported, items } = await verifyPage(h);
    for (const [raw, item] of items) {
      item.texts = raw.texts;
      item.textChecks = await checkTexts(item.entry || item.unverifiedEntry, item.texts);
      state.entries.push(item);
    }
    if (cpFailure && !unsupported && !state.integrityProblems.length) {
      integrityProblem("The log's signed checkpoint did not verify: " + cpFailure + ".");
    }
    if (cp && !unsupported && state.witness === undefined) {
      await checkWitnesses(cp, h.key);
    }
    state.next = h.next === null || h.next === undefined ? null : h.next;
    fillFilters();
    renderHistory();
    renderIntegrity();
  }

  function fillFilters() {
    const agencies = new Map();
    const purposes = new Map();
    for (const it of state.entries) {
      const e = it.entry;
      if (!e) continue;
      if (e.actor.kind === "agency") agencies.set(e.actor.id, agencyName(e.actor.id));
      if (e.purpose) purposes.set(e.purpose, purposeText(e.purpose));
    }
    for (const [select, map] of [[$("filter-agency"), agencies], [$("filter-purpose"), purposes]]) {
      const current = select.value;
      const first = select.options[0];
      select.replaceChildren(first);
      for (const [value, label] of [...map].sort((a, b) => a[1].localeCompare(b[1]))) {
        select.append(el("option", { value, text: label }));
      }
      select.value = map.has(current) ? current : "";
    }
  }

  function matches(it) {
    const e = it.entry || it.unverifiedEntry;
    const fa = $("filter-agency").value;
    const fp = $("filter-purpose").value;
    const fo = $("filter-outcome").value;
    if (!e) return !fa && !fp && !fo;
    if (fa && !(e.actor.kind === "agency" && e.actor.id === fa)) return false;
    if (fp && e.purpose !== fp) return false;
    if (fo === "review") return e.review;
    if (fo === "other") return e.action !== "access";
    if (fo) return e.action === "access" && e.decision === fo;
    return true;
  }

  function detail(dl, term, value) {
    if (value === null || value === undefined || value === "" || (Array.isArray(value) && !value.length)) return;
    dl.append(el("dt", { text: term }));
    if (Array.isArray(value)) {
      const ul = el("ul", { class: "plain" });
      for (const v of value) ul.append(el("li", {}, v));
      dl.append(el("dd", {}, ul));
    } else {
      dl.append(el("dd", {}, value));
    }
  }

  // A free text of a version-4 entry, shown only when it matched its commitment.
  function textDetail(dl, term, check) {
    if (!check) return;
    dl.append(el("dt", { text: term }));
    if (check.ok) {
      dl.append(el("dd", { "data-text-check": "ok" }, check.text));
    } else {
      dl.append(el("dd", { class: "text-failed", "data-text-check": "failed", role: "alert" },
        el("span", { "aria-hidden": "true", text: "\u2717 " }), "Not shown: " + check.reason));
    }
  }

  function mark(it) {
    if (it.status === "ok") {
      return el("p", { class: "mark ok", "data-verified": "ok" },
        el("span", { "aria-hidden": "true", text: "\u2713 " }), "Verified in your browser: this entry is in the signed log");
    }
    if (it.status === "unavailable") {
      return el("p", { class: "mark unavailable", "data-verified": "unavailable" },
        el("span", { "aria-hidden": "true", text: "? " }), "Cannot verify in this browser (" + it.reason + ")");
    }
    return el("p", { class: "mark failed", "data-verified": "failed", role: "alert" },
      el("span", { "aria-hidden": "true", text: "\u2717 " }), "Verification FAILED: " + (it.reason || "unknown reason"));
  }

  function card(it) {
    const e = it.entry || it.unverifiedEntry;
    const li = el("li", { class: "card entry " + it.status, "data-index": String(it.index) });
    if (!e) {
      li.append(el("h3", { text: "An entry this page could not read" }), mark(it));
      return li;
    }
    const title = el("h3", {}, headline(e));
    li.append(title);
    const meta = el("p", { class: "meta" }, el("time", { dateTime: new Date(e.time).toISOString(), text: when(e.time) }));
    if (e.action === "access") {
      meta.append(" \u00b7 ", el("span", { class: "outcome " + e.decision, text: DECISIONS[e.decision] || e.decision }));
    }
    li.append(meta);
    if (e.deferral && "disclose_at" in e.deferral) {
      li.append(el("p", { class: "badge review" }, "Covert access \u2014 kept from you until it was disclosed (see the disclosure above)."));
    }
    if (e.review) {
      li.append(el("p", { class: "badge review" }, "Emergency access \u2014 for review: an official will check that it was justified."));
    }
    if (!it.entry) li.append(el("p", { class: "muted", text: "Shown unverified:" }));
    const dl = el("dl");
    if (e.actor.kind === "agency") detail(dl, "Agency", agencyName(e.actor.id));
    if (e.actor.kind === "citizen" && e.initiator) {
      detail(dl, "Token used", tokenText(e.initiator) + " \u2014 whoever holds it (you, or the operator who issued it) acts as you");
    } else if (e.action === "token.issue") {
      detail(dl, "Token", e.initiator);
    } else if (e.v >= 4 && e.official !== null) {
      textDetail(dl, "Asked by", it.textChecks.official);
    } else {
      detail(dl, "Asked by", e.initiator);
    }
    detail(dl, "Purpose", purposeText(e.purpose));
    if (e.action === "access") {
      detail(dl, "Fields released", e.released.map(fieldText));
      detail(dl, "Fields withheld", e.withheld.map((w) => fieldText(w.field) + " \u2014 " + reasonText(w.reason)));
      if (!e.released.length && !e.withheld.length) detail(dl, "Fields asked for", e.requested.map(fieldText));
    } else if (e.action === "consent.request" || e.action.startsWith("consent.")) {
      detail(dl, "Fields", e.requested.concat(e.released.filter((f) => !e.requested.includes(f))).map(fieldText));
    } else {
      detail(dl, "Fields", [...new Set(e.requested.concat(e.released))].map(fieldText));
    }
    if (e.legal_basis) detail(dl, "Legal basis", legalBasisText(e.legal_basis));
    detail(dl, "Law cited", e.legal_reference);
    if (e.consent_id && e.action === "access") {
      detail(dl, "Consent used", e.consent_id.split(",").map(consentText));
    }
    if (e.v >= 4) {
      textDetail(dl, "Justification given", it.textChecks.justification);
    } else {
      detail(dl, "Justification given", e.justification);
    }
    if (e.deferral && "of" in e.deferral) {
      detail(dl, "Discloses log entry", "number " + e.deferral.of);
      if (e.deferral.lift !== null) textDetail(dl, "Decision that lifted the secrecy", it.textChecks.lift);
    }
    detail(dl, "Log entry", "number " + e.index);
    li.append(dl, mark(it));
    return li;
  }

  function renderHistory() {
    const list = $("history-list");
    const shown = state.entries.filter(matches);
    list.replaceChildren(...shown.map(card));
    const total = state.entries.length;
    $("history-summary").textContent = total === 0 ? "Nothing in your history yet."
      : "Showing " + shown.length + " of " + total + " entries loaded" + (state.next !== null ? " (older entries exist)." : ".");
    $("history-more").hidden = state.next === null;
  }

  // ---------- consents and requests ----------

  function consentCard(c, actions) {
    const li = el("li", { class: "card consent", "data-consent": c.id });
    li.append(el("h3", { text: c.agency_name || agencyName(c.agency) }));
    const dl = el("dl");
    detail(dl, "Purpose", c.purpose_description || purposeText(c.purpose));
    detail(dl, "Fields", c.fields.map(fieldText));
    detail(dl, "Status", { pending: "Waiting for your answer", active: "Active", expired: "Expired", revoked: "Withdrawn", denied: "Declined" }[c.status] || c.status);
    if (c.granted_at) detail(dl, "Given", whenText(c.granted_at));
    detail(dl, "Valid from", whenText(c.valid_from));
    detail(dl, "Valid until", whenText(c.expires_at));
    if (c.revoked_at) detail(dl, "Withdrawn", whenText(c.revoked_at));
    if (c.max_uses !== null && c.max_uses !== undefined) detail(dl, "Uses", c.uses + " of at most " + c.max_uses);
    else if (c.uses) detail(dl, "Used", c.uses + (c.uses === 1 ? " time" : " times"));
    li.append(dl);
    const row = el("div", { class: "row" });
    for (const a of actions) row.append(a);
    if (row.childNodes.length) li.append(row);
    return li;
  }

  function receiptButton(c) {
    if (!c.receipt) return null;
    const b = el("button", { type: "button", class: "secondary", text: "Download receipt" });
    b.setAttribute("aria-label", "Download the signed receipt of your consent to " + (c.agency_name || agencyName(c.agency)));
    b.addEventListener("click", () => download("consent-receipt-" + c.id + ".txt", c.receipt, "text/plain"));
    return b;
  }

  // The same consent as an ISO/IEC TS 27560 record in the W3C DPV profile (JSON-LD), for a
  // regulator or another controller; unsigned, it names the signed receipt's SHA-256.
  function recordButton(c) {
    if (!c.receipt) return null;
    const who = c.agency_name || agencyName(c.agency);
    return actionButton("Download record (DPV)", "Download the standard consent record of your consent to " + who, "secondary", async () => {
      const rec = await api("/v1/me/consents/" + encodeURIComponent(c.id) + "/record");
      download("consent-record-" + c.id + ".jsonld", JSON.stringify(rec, null, 2) + "\n", "application/ld+json");
      setStatus("Record of your consent to " + who + " downloaded.", "ok");
    }, true);
  }

  function actionButton(label, aria, cls, handler, again) {
    const b = el("button", { type: "button", class: cls, text: label });
    b.setAttribute("aria-label", aria);
    b.addEventListener("click", async () => {
      b.disabled = true;
      try {
        await handler();
        if (again) b.disabled = false;
      } catch (e) {
        setStatus(e.message, "warning");
        b.disabled = false;
      }
    });
    return b;
  }

  function renderConsents() {
    const groups = { active: [], expired: [], revoked: [] };
    for (const c of state.consents) {
      if (c.status === "active") groups.active.push(c);
      else if (c.status === "expired") groups.expired.push(c);
      else if (c.status === "revoked" || c.status === "denied") groups.revoked.push(c);
    }
    for (const [name, list] of Object.entries(groups)) {
      const ul = $("consents-" + name);
      if (!list.length) {
        ul.replaceChildren(el("li", { class: "muted", text: "None." }));
        continue;
      }
      ul.replaceChildren(...list.map((c) => {
        const who = c.agency_name || agencyName(c.agency);
        const actions = [];
        if (c.status === "active") {
          actions.push(actionButton("Withdraw consent", "Withdraw your consent to " + who, "danger", async () => {
            await api("/v1/me/consents/" + encodeURIComponent(c.id) + "/revoke", { method: "POST" });
            setStatus("Consent to " + who + " withdrawn.", "ok");
            await refresh();
          }));
        }
        const r = receiptButton(c);
        if (r) actions.push(r);
        const d = recordButton(c);
        if (d) actions.push(d);
        return consentCard(c, actions);
      }));
    }
  }

  function renderRequests() {
    const pending = state.requests.filter((r) => r.status === "pending");
    $("requests-count").textContent = pending.length ? "(" + pending.length + ")" : "";
    const ul = $("requests-list");
    if (!pending.length) {
      ul.replaceChildren(el("li", { class: "muted", text: "No requests are waiting." }));
      return;
    }
    ul.replaceChildren(...pending.map((c) => {
      const who = c.agency_name || agencyName(c.agency);
      return consentCard(c, [
        actionButton("Approve", "Approve the request from " + who, "", async () => {
          await api("/v1/me/consent-requests/" + encodeURIComponent(c.id) + "/approve", { method: "POST" });
          setStatus("You approved the request from " + who + ". It is now an active consent.", "ok");
          await refresh();
        }),
        actionButton("Decline", "Decline the request from " + who, "secondary", async () => {
          await api("/v1/me/consent-requests/" + encodeURIComponent(c.id) + "/deny", { method: "POST" });
          setStatus("You declined the request from " + who + ".", "ok");
          await refresh();
        }),
      ]);
    }));
  }

  // ---------- loading ----------

  async function loadConsents() {
    const [c, r] = await Promise.all([api("/v1/me/consents"), api("/v1/me/consent-requests")]);
    state.consents = c.consents || [];
    state.requests = r.requests || [];
    renderConsents();
    renderRequests();
  }

  // The event a citizen is told of for an entry (vault-core `citizen_event_type`); the
  // page derives it from the verified leaf and compares it with what the vault said.
  function eventType(e) {
    if (!e) return null;
    switch (e.action) {
      case "access":
        if (e.review) return "access.break_glass";
        return { granted: "access.released", partial: "access.partly_released" }[e.decision] || "access.refused";
      case "consent.request":
        return e.decision === "pending" ? "consent.requested" : null;
      case "consent.grant":
        return "consent.granted";
      case "consent.revoke":
        return "consent.withdrawn";
      case "consent.deny":
        return "consent.declined";
      case "erasure":
        return "erasure.done";
      case "access.disclose":
        return "access.disclosed";
      default:
        return null;
    }
  }

  const EVENT_TEXT = {
    "access.released": "Data released",
    "access.partly_released": "Data partly released",
    "access.refused": "Request refused: nothing released",
    "access.break_glass": "Emergency access, for review",
    "consent.requested": "Consent asked for",
    "consent.granted": "Consent given",
    "consent.withdrawn": "Consent withdrawn",
    "consent.declined": "Consent request declined",
    "erasure.done": "Data erased",
    "access.disclosed": "A covert access, disclosed now",
  };

  async function loadNotifications(start) {
    const q = "/v1/me/notifications?limit=" + PAGE_SIZE + (start === null || start === undefined ? "" : "&start=" + start);
    const h = await api(q);
    const { items } = await verifyPage(h);
    for (const [raw, it] of items) {
      it.said = raw.type;
      if (it.entry && eventType(it.entry) !== raw.type) {
        it.status = "failed";
        it.reason = "the vault called this entry \u201c" + raw.type + "\u201d, which is not what the log says";
        it.unverifiedEntry = it.entry;
        it.entry = null;
      }
      state.notifications.push(it);
    }
    state.notificationsNext = h.next === null || h.next === undefined ? null : h.next;
    renderNotifications();
  }

  function notificationCard(it) {
    const e = it.entry || it.unverifiedEntry;
    const type = eventType(e) || it.said;
    const li = el("li", { class: "card notification " + it.status, "data-index": String(it.index), "data-type": type || "" });
    if (!e) {
      li.append(el("h3", { text: "A notification this page could not read" }), mark(it));
      return li;
    }
    li.append(el("h3", {}, headline(e)));
    li.append(el("p", { class: "meta" },
      el("time", { dateTime: new Date(e.time).toISOString(), text: when(e.time) }),
      " \u00b7 ", el("span", { class: "event", text: EVENT_TEXT[type] || type })));
    if (!it.entry) li.append(el("p", { class: "muted", text: "Shown unverified:" }));
    const dl = el("dl");
    if (e.actor.kind === "agency") detail(dl, "Agency", agencyName(e.actor.id));
    detail(dl, "Purpose", purposeText(e.purpose));
    detail(dl, "Log entry", "number " + e.index + " (details under \u201cWho used my data\u201d)");
    li.append(dl, mark(it));
    return li;
  }

  function renderNotifications() {
    const list = $("notifications-list");
    list.replaceChildren(...state.notifications.map(notificationCard));
    const n = state.notifications.length;
    $("notifications-summary").textContent = n === 0 ? "No notifications yet."
      : n + (n === 1 ? " notification" : " notifications") + (state.notificationsNext !== null ? " (older ones exist)." : ".");
    $("notifications-more").hidden = state.notificationsNext === null;
  }

  async function refresh() {
    state.notifications = [];
    state.notificationsNext = null;
    state.entries = [];
    state.disclosures = new Map();
    state.checkpoints = [];
    state.witness = undefined;
    state.next = null;
    await loadConsents();
    await loadHistory(null);
    await loadNotifications(null);
  }

  async function start() {
    $("signin").hidden = true;
    $("app").hidden = false;
    $("sign-out").hidden = false;
    setStatus("Loading and checking your history\u2026");
    try {
      state.vocab = Object.assign(state.vocab, await api("/v1/vocabulary"));
    } catch (e) {
      // Without the vocabulary the page still works, showing codes instead of names.
    }
    try {
      await refresh();
      setStatus("");
      document.body.dataset.ready = "true";
    } catch (e) {
      if (e.status === 401 || e.status === 403) {
        signOut("That token was not accepted: " + e.message);
        return;
      }
      setStatus("Could not load your data: " + e.message, "warning");
      document.body.dataset.ready = "error";
    }
  }

  function signOut(message) {
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    state.entries = [];
    state.notifications = [];
    state.consents = [];
    state.requests = [];
    state.checkpoints = [];
    state.witness = undefined;
    state.integrityProblems = [];
    for (const id of ["history-list", "consents-active", "consents-expired", "consents-revoked", "requests-list", "integrity"]) {
      $(id).replaceChildren();
    }
    $("app").hidden = true;
    $("sign-out").hidden = true;
    $("signin").hidden = false;
    $("signin-error").textContent = message || "";
    delete document.body.dataset.ready;
    $("token").focus();
  }

  // ---------- tabs (WAI-ARIA tabs pattern: arrows, Home, End) ----------

  function setupTabs() {
    const tabs = [...document.querySelectorAll('[role="tab"]')];
    function select(tab, focus) {
      for (const t of tabs) {
        const on = t === tab;
        t.setAttribute("aria-selected", on ? "true" : "false");
        t.tabIndex = on ? 0 : -1;
        $(t.getAttribute("aria-controls")).hidden = !on;
      }
      if (focus) tab.focus();
    }
    tabs.forEach((t, i) => {
      t.addEventListener("click", () => select(t, false));
      t.addEventListener("keydown", (ev) => {
        let j = null;
        if (ev.key === "ArrowRight") j = (i + 1) % tabs.length;
        else if (ev.key === "ArrowLeft") j = (i - 1 + tabs.length) % tabs.length;
        else if (ev.key === "Home") j = 0;
        else if (ev.key === "End") j = tabs.length - 1;
        if (j !== null) {
          ev.preventDefault();
          select(tabs[j], true);
        }
      });
    });
  }

  // ---------- erasure ----------

  function setupErasure() {
    const dialog = $("erase-dialog");
    const input = $("erase-confirm");
    const submit = $("erase-submit");
    $("erase-open").addEventListener("click", () => {
      input.value = "";
      submit.disabled = true;
      $("erase-error").textContent = "";
      dialog.showModal();
      input.focus();
    });
    input.addEventListener("input", () => {
      submit.disabled = input.value.trim() !== "ERASE";
    });
    $("erase-cancel").addEventListener("click", () => dialog.close());
    $("erase-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (input.value.trim() !== "ERASE") return;
      submit.disabled = true;
      try {
        await api("/v1/me/erasure", { method: "POST", body: { confirm: true } });
        dialog.close();
        signOut("Your data was erased. The log keeps that it happened, never your data.");
      } catch (e) {
        $("erase-error").textContent = "Erasure failed: " + e.message;
        submit.disabled = false;
      }
    });
  }

  // ---------- wiring ----------

  document.addEventListener("DOMContentLoaded", () => {
    setupTabs();
    setupErasure();
    $("signin-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const t = $("token").value.trim();
      if (!t) {
        $("signin-error").textContent = "Enter your token.";
        return;
      }
      $("signin-error").textContent = "";
      $("token").value = "";
      state.token = t;
      sessionStorage.setItem(TOKEN_KEY, t);
      start();
    });
    $("sign-out").addEventListener("click", () => signOut(""));
    for (const id of ["filter-agency", "filter-purpose", "filter-outcome"]) {
      $(id).addEventListener("change", renderHistory);
    }
    $("filters").addEventListener("submit", (ev) => ev.preventDefault());
    $("history-more").addEventListener("click", async () => {
      const b = $("history-more");
      b.disabled = true;
      try {
        await loadHistory(state.next);
      } catch (e) {
        setStatus("Could not load older entries: " + e.message, "warning");
      }
      b.disabled = false;
    });
    $("notifications-more").addEventListener("click", async () => {
      const b = $("notifications-more");
      b.disabled = true;
      try {
        await loadNotifications(state.notificationsNext);
      } catch (e) {
        setStatus("Could not load older notifications: " + e.message, "warning");
      }
      b.disabled = false;
    });
    $("export").addEventListener("click", async () => {
      try {
        const data = await api("/v1/me/export");
        const day = new Date().toISOString().slice(0, 10);
        download("my-data-" + day + ".json", JSON.stringify(data, null, 2), "application/json");
        setStatus("Your data was downloaded.", "ok");
      } catch (e) {
        setStatus("The export failed: " + e.message, "warning");
      }
    });
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) {
      state.token = saved;
      start();
    } else {
      $("token").focus();
    }
  });

  // For tests and the curious: re-run one shown entry's verification with another proof
  // (e.g. one hash altered) and show the result on its card.
  window.vaultPage = Object.freeze({
    entryIndices: () => state.entries.map((e) => e.index),
    entryProof: (index) => {
      const it = state.entries.find((e) => e.index === index);
      return it ? it.proof.slice() : null;
    },
    reverify: async (index, proof) => {
      const it = state.entries.find((e) => e.index === index);
      if (!it || !it.checkpoint) return null;
      const r = await verifyEntry(it, it.checkpoint, proof);
      it.status = r.status;
      it.reason = r.reason || null;
      if (r.status !== "ok") {
        it.unverifiedEntry = it.entry || it.unverifiedEntry;
        it.entry = null;
      } else {
        it.entry = r.entry;
        await checkDeferral(it);
      }
      it.textChecks = await checkTexts(it.entry || it.unverifiedEntry, it.texts);
      renderHistory();
      renderIntegrity();
      return it.status;
    },
    entryTexts: (index) => {
      const it = state.entries.find((e) => e.index === index);
      return it && Array.isArray(it.texts) ? it.texts.map((t) => Object.assign({}, t)) : null;
    },
    // Re-checks one entry's free texts as if the vault had sent `texts`, and shows the
    // result on its card: {field: true when shown, false when refused}.
    recheckTexts: async (index, texts) => {
      const it = state.entries.find((e) => e.index === index);
      if (!it) return null;
      it.texts = texts;
      it.textChecks = await checkTexts(it.entry || it.unverifiedEntry, texts);
      renderHistory();
      const out = {};
      for (const k of Object.keys(it.textChecks)) out[k] = it.textChecks[k].ok;
      return out;
    },
  });
})();
