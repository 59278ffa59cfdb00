#!/usr/bin/env python3
"""Writes a reproducible set of realistic messages as a Maildir and as an mbox.

Messages carry the headers journaled mail has (Received, From, To, Cc, Subject, Date,
unique Message-IDs, In-Reply-To and References for replies, MIME). Bodies are word text;
messages of 32 KiB and more carry a base64 attachment of random bytes, since that is what
makes mail that large and it does not compress.
"""

import argparse
import base64
import os
import random
import time
from email.utils import format_datetime
from datetime import datetime, timezone

WORDS = (
    "the quarterly figures project budget review meeting tomorrow please find attached "
    "draft contract customer supplier invoice delivery schedule update thanks regards "
    "proposal agenda minutes action items follow up deadline approval signed order "
    "shipment warehouse forecast revenue margin travel expenses team hiring offer "
    "interview feedback release planning roadmap migration server outage incident "
    "report analysis summary question answer call phone office remote holiday"
).split()
PEOPLE = [
    ("Alice Martin", "alice@corp.test"), ("Bob Dupont", "bob@corp.test"),
    ("Carol Weber", "carol@corp.test"), ("Dan Okafor", "dan@corp.test"),
    ("Erin Rossi", "erin@partner.test"), ("Frank Lee", "frank@supplier.test"),
    ("Grace Kim", "grace@customer.test"), ("Heidi Novak", "heidi@customer.test"),
]


def sentence(rng):
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 16))]
    return " ".join(words).capitalize() + "."


def paragraph(rng):
    return " ".join(sentence(rng) for _ in range(rng.randint(2, 6)))


def wrap(text, width=72):
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\n".join(lines)


def text_body(rng, size):
    parts = []
    total = 0
    while total < size:
        p = wrap(paragraph(rng))
        parts.append(p)
        total += len(p) + 2
    return "\n\n".join(parts)


def message(rng, n, size, ids, start):
    sender = rng.choice(PEOPLE)
    rcpts = rng.sample([p for p in PEOPLE if p != sender], rng.randint(1, 3))
    when = datetime.fromtimestamp(start + n * 37 + rng.randint(0, 30), timezone.utc)
    mid = f"<{start:x}.{n:06d}.{rng.getrandbits(32):08x}@{sender[1].split('@')[1]}>"
    subject = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))).capitalize()
    headers = [
        f"Received: from mx{rng.randint(1, 4)}.corp.test"
        f" (mx.corp.test [192.0.2.{rng.randint(1, 254)}])",
        f"\tby mail.corp.test (Postfix) with ESMTPS id {rng.getrandbits(40):010X}",
        f"\tfor <{rcpts[0][1]}>; {format_datetime(when)}",
        f"From: {sender[0]} <{sender[1]}>",
        f"To: {rcpts[0][0]} <{rcpts[0][1]}>",
    ]
    if len(rcpts) > 1:
        headers.append("Cc: " + ", ".join(f"{name} <{addr}>" for name, addr in rcpts[1:]))
    if ids and rng.random() < 0.4:
        parent = rng.choice(ids[-50:])
        headers += [f"Subject: Re: {subject}", f"In-Reply-To: {parent}", f"References: {parent}"]
    else:
        headers.append(f"Subject: {subject}")
    headers += [f"Date: {format_datetime(when)}", f"Message-ID: {mid}", "MIME-Version: 1.0"]
    ids.append(mid)

    head_len = sum(len(h) + 1 for h in headers)
    if size < 32 * 1024:
        body = text_body(rng, max(size - head_len - 80, 100))
        headers += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 7bit"]
        return "\n".join(headers) + "\n\n" + body + "\n"

    boundary = f"=_bench_{rng.getrandbits(48):012x}"
    text = text_body(rng, 2000)
    attachment_bytes = max(size - head_len - len(text) - 600, 1000) * 3 // 4
    blob = base64.encodebytes(rng.randbytes(attachment_bytes)).decode()
    headers.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
    body = (
        f"This is a multi-part message in MIME format.\n\n--{boundary}\n"
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 7bit\n\n"
        f"{text}\n\n--{boundary}\n"
        f'Content-Type: application/pdf; name="report-{n}.pdf"\n'
        f'Content-Disposition: attachment; filename="report-{n}.pdf"\n'
        f"Content-Transfer-Encoding: base64\n\n{blob}\n--{boundary}--\n"
    )
    return "\n".join(headers) + "\n\n" + body


def mbox_escape(text):
    # mboxrd: a body line that reads as a separator, with any '>' already before it, gets
    # one more '>'.
    out = []
    for line in text.split("\n"):
        if line.lstrip(">").startswith("From "):
            line = ">" + line
        out.append(line)
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--size", type=int, required=True, help="approximate bytes per message")
    parser.add_argument("--maildir", help="Maildir to create")
    parser.add_argument("--mbox", help="mbox file to create")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    start = int(time.time()) - args.count * 40
    if args.maildir:
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(args.maildir, sub), exist_ok=True)
    mbox = open(args.mbox, "w", encoding="utf-8") if args.mbox else None
    ids = []
    for n in range(args.count):
        text = message(rng, n, args.size, ids, start)
        if args.maildir:
            name = f"{start + n}.M{n}P{os.getpid()}.bench,S={len(text)}:2,S"
            with open(os.path.join(args.maildir, "cur", name), "w", encoding="utf-8") as f:
                f.write(text)
        if mbox:
            stamp = time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(start + n * 37))
            mbox.write(f"From bench@corp.test {stamp}\n{mbox_escape(text)}\n")
    if mbox:
        mbox.close()


if __name__ == "__main__":
    main()
