#!/usr/bin/env python3
"""Checks the corpus itself: pairs complete, JSON well-formed, expectations consistent.

Besides the schema rules it recomputes what it can with Python's own email helpers (address
lists, RFC 2047 subjects, dates, journal unwrapping) and reports any disagreement. It says
nothing about threadsd; it keeps mistakes out of the expected results.
"""

import base64
import json
import pathlib
import quopri
import re
import sys
from email.header import decode_header, make_header
from email.utils import getaddresses, parsedate_to_datetime

HERE = pathlib.Path(__file__).resolve().parent
KEYS = {
    "description", "outcome", "refusal", "message_id", "subject", "from", "date", "parties",
    "journal", "stored_prefix", "same_dedup_as", "malformed",
}
PARTY_HEADERS = [
    "from", "sender", "reply-to", "to", "cc", "bcc",
    "resent-from", "resent-sender", "resent-to", "resent-cc", "resent-bcc",
]
problems = []


def problem(name, text):
    problems.append("%s: %s" % (name, text))


def split_message(raw):
    """(header block, body) of CRLF bytes; no blank line means all header."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return raw, b""
    return raw[: end + 2], raw[end + 4 :]


def headers(block):
    """[(lower-case name, unfolded value)] of a header block; colon-less lines skipped."""
    fields = []
    for line in block.decode("utf-8", "surrogateescape").split("\r\n"):
        if line[:1] in (" ", "\t") and fields:
            fields[-1][1] += line
        elif ":" in line:
            name, value = line.split(":", 1)
            fields.append([name.strip().lower(), value.strip()])
    return [tuple(f) for f in fields]


def header(fields, name):
    values = [v for n, v in fields if n == name]
    return values[0] if values else None


def to_crlf(raw):
    return re.sub(rb"\r?\n", b"\r\n", raw)


def journal_original(raw):
    """The message/rfc822 attachment of a journal report, decoded, and the report lines."""
    block, body = split_message(raw)
    fields = headers(block)
    boundary = re.search(r'boundary="([^"]+)"', header(fields, "content-type")).group(1)
    delimiter = b"\r\n--" + boundary.encode()
    chunks = (b"\r\n" + body).split(delimiter)
    report_head, report_text = split_message(chunks[1].split(b"\r\n", 1)[1])
    report_cte = header(headers(report_head), "content-transfer-encoding") or "7bit"
    if report_cte.lower() == "quoted-printable":
        report_text = to_crlf(quopri.decodestring(report_text))
    part_head, part_body = split_message(chunks[2].split(b"\r\n", 1)[1])
    cte = header(headers(part_head), "content-transfer-encoding").lower()
    if cte == "base64":
        part_body = base64.b64decode(b"".join(part_body.split()))
    elif cte == "quoted-printable":
        part_body = to_crlf(quopri.decodestring(part_body))
    return part_body, report_text.decode("utf-8")


def report_addresses(text):
    found = []
    for line in text.split("\r\n"):
        if ":" not in line:
            continue
        key, value = line.split(":", 1)
        if key.lower() in ("subject", "message-id"):
            continue
        for item in value.split(","):
            item = item.strip()
            item = re.sub(r"^(Expanded|Forwarded):\s*", "", item)
            if item:
                found.append(item)
    return found


def lower_domain(address):
    local, _, domain = address.rpartition("@")
    return local + "@" + domain.lower()


def recompute(name, raw, expected):
    """Checks the expectation against an independent reading of the file."""
    stored = to_crlf(raw)
    extra = []
    if expected.get("journal"):
        stored, lines = journal_original(stored)
        extra = report_addresses(lines)
    block, _ = split_message(stored)
    fields = headers(block)

    values = [v for n, v in fields if n in PARTY_HEADERS]
    found = [a for _, a in getaddresses(values) if "@" in a] + extra
    want = sorted({a.lower() for a in found})
    if "parties" in expected and expected["parties"] != want:
        problem(name, "parties differ from recomputed: %s" % (set(want) ^ set(expected["parties"])))

    if "from" in expected:
        got = lower_domain(getaddresses([header(fields, "from")])[0][1])
        if got != expected["from"]:
            problem(name, "from %r, recomputed %r" % (expected["from"], got))

    if "subject" in expected:
        value = header(fields, "subject")
        got = str(make_header(decode_header(value))) if value else value
        if value == "":
            got = ""
        if got != expected["subject"]:
            problem(name, "subject %r, recomputed %r" % (expected["subject"], got))

    if "date" in expected:
        value = header(fields, "date")
        try:
            got = int(parsedate_to_datetime(value).timestamp()) if value else None
        except (TypeError, ValueError):
            got = None
        if got != expected["date"]:
            problem(name, "date %r, recomputed %r" % (expected["date"], got))

    if "message_id" in expected:
        value = header(fields, "message-id")
        got = value.strip().strip("<>").strip() if value else None
        if got != expected["message_id"]:
            problem(name, "message_id %r, recomputed %r" % (expected["message_id"], got))

    if "stored_prefix" in expected:
        if not stored.startswith(expected["stored_prefix"].encode("utf-8")):
            problem(name, "stored bytes do not start with stored_prefix")
    return stored


def main():
    emls = {p.stem for p in HERE.glob("*.eml")}
    jsons = {p.stem for p in HERE.glob("*.json")}
    for name in sorted(emls - jsons):
        problem(name, "has no .json")
    for name in sorted(jsons - emls):
        problem(name, "has no .eml")

    cases, stored = {}, {}
    for name in sorted(emls & jsons):
        try:
            expected = json.loads((HERE / (name + ".json")).read_text(encoding="utf-8"))
        except ValueError as e:
            problem(name, "json does not parse: %s" % e)
            continue
        cases[name] = expected
        if not isinstance(expected, dict) or "outcome" not in expected:
            problem(name, "no outcome")
            continue
        if set(expected) - KEYS:
            problem(name, "unknown keys %s" % sorted(set(expected) - KEYS))
        if expected["outcome"] not in ("stored", "refused"):
            problem(name, "bad outcome %r" % expected["outcome"])
        if expected["outcome"] == "refused":
            if expected.get("refusal") not in ("not-mail", "empty"):
                problem(name, "refused without a known refusal")
            if set(expected) - {"description", "outcome", "refusal"}:
                problem(name, "a refused case asserts stored fields")
            continue
        if "refusal" in expected:
            problem(name, "refusal on a stored case")
        parties = expected.get("parties")
        if parties is not None:
            if parties != sorted(set(parties)):
                problem(name, "parties not sorted and unique")
            if any(p != p.lower() for p in parties):
                problem(name, "parties not lower-case")
        raw = (HERE / (name + ".eml")).read_bytes()
        stored[name] = recompute(name, raw, expected)

    for name, expected in cases.items():
        other = expected.get("same_dedup_as")
        if other is None:
            continue
        if other not in cases:
            problem(name, "same_dedup_as names unknown case %r" % other)
            continue
        a, b = stored.get(name), stored.get(other)
        if a is None or b is None:
            continue
        if split_message(a)[1] != split_message(b)[1]:
            problem(name, "body after the header block differs from %s" % other)
        for key in ("message_id",) + (("subject", "from", "date") if expected.get(
                "message_id", "") is None else ()):
            if expected.get(key, "?") != cases[other].get(key, "?"):
                problem(name, "%s differs from %s" % (key, other))

    for line in problems:
        print(line)
    print("%d cases, %d problems" % (len(cases), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
