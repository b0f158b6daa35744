#!/usr/bin/env python3
"""Checks a vault consent record (ISO/IEC TS 27560, W3C DPV profile) with an independent
JSON-LD processor, PyLD (Debian's python3-pyld), and no network.

Usage: dpv_check.py RECORD.json CONTEXT.jsonld RECEIPT.txt

RECORD.json is what `GET /v1/me/consents/{id}/record` answered, CONTEXT.jsonld the
project's shipped context (policies/dpv/context.jsonld), RECEIPT.txt the signed C2SP
receipt of the same consent. The record is expanded, flattened and turned into RDF by PyLD
with a document loader that refuses every URL, so it must carry its context; then the
profile's required fields are looked up in the expanded graph, by full IRI. Prints `ok`
and exits 0, or names the first missing field and exits 1.
"""

import base64
import hashlib
import json
import sys

from pyld import jsonld

DPV = "https://w3id.org/dpv#"
PD = "https://w3id.org/dpv/pd#"
GDPR = "https://w3id.org/dpv/legal/eu/gdpr#"
DCT = "http://purl.org/dc/terms/"
SKOS = "http://www.w3.org/2004/02/skos/core#"
RDF_VALUE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#value"
XSD_DATETIME = "http://www.w3.org/2001/XMLSchema#dateTime"
PROFILE = "https://w3id.org/dpv/schema/dpv-27560#"


def no_network(url, options=None):
    raise jsonld.JsonLdError(
        "the record must carry its context: no URL is loaded",
        "jsonld.LoadDocumentError",
        {"url": url},
        code="loading document failed",
    )


class Missing(Exception):
    pass


def need(cond, what):
    if not cond:
        raise Missing(what)


def main():
    record_path, context_path, receipt_path = sys.argv[1:4]
    with open(record_path, encoding="utf-8") as f:
        doc = json.load(f)
    with open(context_path, encoding="utf-8") as f:
        shipped = json.load(f)
    with open(receipt_path, "rb") as f:
        receipt = f.read()
    need(doc.get("@context") == shipped["@context"], "the shipped context, inline")

    jsonld.set_document_loader(no_network)
    options = {"documentLoader": no_network}
    flat = jsonld.flatten(doc, None, options)
    quads = jsonld.to_rdf(doc, {"format": "application/n-quads", **options})
    need(quads.count("\n") > 40, "an RDF graph of the record")
    nodes = {n["@id"]: n for n in flat}

    def ids(node, prop):
        return [v["@id"] for v in node.get(prop, []) if "@id" in v]

    def node(ref):
        need(ref in nodes, "node " + ref)
        return nodes[ref]

    def one(node_, prop, what):
        refs = ids(node_, prop)
        need(len(refs) >= 1, what)
        return [node(r) for r in refs]

    def typed(n, *types):
        return any(t in n.get("@type", []) for t in types)

    def literal(n, prop, what, datatype=None):
        vals = [v for v in n.get(prop, []) if "@value" in v]
        need(vals, what)
        if datatype:
            need(all(v.get("@type") == datatype for v in vals), what + " typed " + datatype)
        return vals[0]["@value"]

    receipts = [n for n in flat if typed(n, DPV + "ConsentReceipt")]
    need(len(receipts) == 1, "one dpv:ConsentReceipt")
    r = receipts[0]
    need(ids(r, DCT + "conformsTo") == [PROFILE + "receipt-eu-gdpr"],
         "receipt dct:conformsTo dpv-27560:receipt-eu-gdpr")
    consent_id = literal(r, DCT + "identifier", "receipt dct:identifier")
    literal(r, DCT + "created", "receipt dct:created", XSD_DATETIME)

    digest = hashlib.sha256(receipt).digest()
    b64 = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    (source,) = one(r, DCT + "source", "receipt dct:source")
    need(source["@id"] == "ni:///sha-256;" + b64, "dct:source names the signed receipt's SHA-256")
    need(literal(source, "https://schema.org/sha256", "schema:sha256") == digest.hex(),
         "schema:sha256 of the signed receipt")

    (rec,) = one(r, DPV + "hasRecordOfActivity", "dpv:hasRecordOfActivity")
    need(typed(rec, DPV + "ConsentRecord"), "a dpv:ConsentRecord")
    need(ids(rec, DCT + "conformsTo") == [PROFILE + "record-eu-gdpr"],
         "record dct:conformsTo dpv-27560:record-eu-gdpr")
    need(literal(rec, DCT + "identifier", "record dct:identifier") == consent_id,
         "record and receipt name one consent")
    (subject,) = one(rec, DPV + "hasDataSubject", "dpv:hasDataSubject")
    literal(subject, DCT + "identifier", "data subject's identifier")
    for notice in one(rec, DPV + "hasNotice", "dpv:hasNotice"):
        need(typed(notice, DPV + "ConsentNotice"), "a dpv:ConsentNotice")
        literal(notice, DCT + "language", "the notice's dct:language")
    need(GDPR + "A6-1-a" in ids(rec, DPV + "hasLegalBasis"), "legal basis eu-gdpr:A6-1-a")
    need(ids(rec, DPV + "hasJurisdiction"), "dpv:hasJurisdiction")
    controllers = ids(rec, DPV + "hasDataController")
    need(controllers, "dpv:hasDataController")
    entities = one(rec, DPV + "hasEntity", "dpv:hasEntity")
    need(any(e["@id"] in controllers and typed(e, DPV + "DataController")
             and literal(e, DPV + "hasName", "the controller's dpv:hasName")
             for e in entities), "the controller as an entity with its name")

    processes = one(rec, DPV + "hasProcess", "dpv:hasProcess")
    for p in processes:
        need(typed(p, DPV + "Process"), "a dpv:Process")
        for purpose in one(p, DPV + "hasPurpose", "dpv:hasPurpose"):
            need(typed(purpose, DPV + "Purpose"), "a dpv:Purpose")
            need(all(b.startswith(DPV) for b in ids(purpose, SKOS + "broader"))
                 and ids(purpose, SKOS + "broader"), "the purpose's DPV concept")
        for data in one(p, DPV + "hasPersonalData", "dpv:hasPersonalData"):
            need(typed(data, DPV + "PersonalData", DPV + "SpecialCategoryPersonalData"),
                 "personal data typed dpv:PersonalData")
            literal(data, DCT + "identifier", "the field's name")
            need(all(b.startswith(PD) for b in ids(data, SKOS + "broader")),
                 "personal data concepts of the pd extension")
        need(ids(p, DPV + "hasDataController"), "the process's dpv:hasDataController")
        need(ids(p, DPV + "hasRecipient"), "dpv:hasRecipient")
        need(GDPR + "A6-1-a" in ids(p, DPV + "hasLegalBasis"), "process legal basis")
        one(p, DPV + "hasStorageCondition", "dpv:hasStorageCondition")
        controls = one(p, DPV + "hasConsentControl", "dpv:hasConsentControl")
        need(any(typed(c, DPV + "WithdrawConsent") for c in controls), "dpv:WithdrawConsent")
        rights = one(p, DPV + "hasRight", "dpv:hasRight")
        need(any(typed(x, GDPR + "A7-3") for x in rights), "the right to withdraw (A7-3)")
        need(ids(p, DPV + "hasJurisdiction"), "the process's dpv:hasJurisdiction")

    statuses = one(rec, DPV + "hasConsentStatus", "dpv:hasConsentStatus")
    given = [s for s in statuses if typed(s, DPV + "ConsentGiven")]
    need(given, "a dpv:ConsentGiven status")
    for s in given:
        literal(s, DPV + "isIndicatedAtTime", "the grant's time", XSD_DATETIME)
        need(ids(s, DPV + "isIndicatedBy") == [DPV + "DataSubject"],
             "given by the data subject")
        durations = one(s, DPV + "hasDuration", "the grant's dpv:hasDuration")
        need(any(typed(d, DPV + "UntilTimeDuration") and literal(d, RDF_VALUE, "until")
                 for d in durations), "the grant's end")
    for s in statuses:
        need(all(t.startswith(DPV + "Consent") for t in s.get("@type", [])),
             "consent statuses are DPV consent statuses")
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except Missing as e:
        print("missing: " + str(e))
        sys.exit(1)
