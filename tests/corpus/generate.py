#!/usr/bin/env python3
"""Writes the .eml/.json pairs of the threadsd mail corpus.

The committed files are the source of truth; this script is how they were made. Run it from
anywhere: it writes next to itself. Every person, domain, subject and body here is invented.
"""

import base64
import json
import pathlib
import random
import struct
import zlib
from email.utils import parsedate_to_datetime

HERE = pathlib.Path(__file__).resolve().parent
CASES = []

JOURNAL_FROM = "MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@contoso.test"
JOURNAL_TO = "journal@archive.test"


# --- helpers -----------------------------------------------------------------------------


def crlf(text, charset="utf-8"):
    """Text written with \\n in this file, as CRLF bytes."""
    return text.replace("\n", "\r\n").encode(charset)


def ts(date_header):
    return int(parsedate_to_datetime(date_header).timestamp())


def parties(*addresses):
    return sorted({a.lower() for a in addresses})


def first_line(raw):
    """The first line of a message including its CRLF."""
    return raw[: raw.index(b"\r\n") + 2].decode("utf-8")


def b64_lines(data, width=76):
    text = base64.b64encode(data).decode("ascii")
    return "\n".join(text[i : i + width] for i in range(0, len(text), width))


def qp_encode(raw):
    """Quoted-printable (RFC 2045 §6.7) of CRLF text: each CRLF a hard line break."""
    out_lines = []
    for line in raw.split(b"\r\n"):
        pieces = []
        for i, byte in enumerate(line):
            last = i == len(line) - 1
            if byte in (0x20, 0x09) and not last:
                pieces.append(chr(byte))
            elif 33 <= byte <= 126 and byte != 0x3D:
                pieces.append(chr(byte))
            else:
                pieces.append("=%02X" % byte)
        encoded, current = [], ""
        for piece in pieces:
            if len(current) + len(piece) > 75:
                encoded.append(current + "=")
                current = ""
            current += piece
        encoded.append(current)
        out_lines.append("\r\n".join(encoded))
    return "\r\n".join(out_lines).encode("ascii")


def tiny_png():
    """A valid 1x1 PNG, built here so no image is copied from anywhere."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00\x2a\x7f\xd4")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


KEY_ORDER = [
    "description", "outcome", "refusal", "message_id", "subject", "from", "date", "parties",
    "journal", "stored_prefix", "same_dedup_as", "malformed",
]


def case(name, raw, description, outcome="stored", **expected):
    expected.update(description=description, outcome=outcome)
    assert set(expected) <= set(KEY_ORDER), set(expected) - set(KEY_ORDER)
    result = {key: expected[key] for key in KEY_ORDER if key in expected}
    CASES.append((name, raw, result))


# --- plain text and address headers -------------------------------------------------------

DATE = "Mon, 03 Jun 2024 09:30:00 +0200"
raw = crlf(
    """Return-Path: <olga@meadow.test>
Received: from desk.meadow.test (desk.meadow.test [192.0.2.10])
\tby mail.meadow.test with ESMTPSA id 4kQ9
\tfor <piet@harbour.example>; Mon, 03 Jun 2024 09:30:02 +0200
From: Olga Meadow <olga@meadow.test>
To: Piet Harbour <piet@harbour.example>
Subject: Lunch on Thursday
Date: Mon, 03 Jun 2024 09:30:00 +0200
Message-ID: <lunch-thursday-01@meadow.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii
Content-Transfer-Encoding: 7bit

Hi Piet,

shall we try the new noodle place on Thursday? I can book a table
for half past twelve.

Olga
"""
)
case(
    "plain-simple",
    raw,
    "single-part text/plain, 7bit, nothing unusual",
    message_id="lunch-thursday-01@meadow.test",
    subject="Lunch on Thursday",
    date=ts(DATE),
    parties=parties("olga@meadow.test", "piet@harbour.example"),
    stored_prefix="Return-Path: <olga@meadow.test>\r\nReceived: from desk.meadow.test",
    **{"from": "olga@meadow.test"},
)

subject_words = [
    "=?UTF-8?B?" + base64.b64encode("Grüße aus ".encode("utf-8")).decode() + "?=",
    "=?ISO-8859-1?Q?K=F6ln?=",
    "und",
    "=?iso-8859-1?b?" + base64.b64encode("Zürich".encode("latin-1")).decode() + "?=",
    "=?utf-8?q?_=E2=80=93_Preise_ab_=E2=82=AC?= 100",
]
DATE = "Tue, 4 Jun 2024 16:05:41 -0400"
raw = crlf(
    """From: =?ISO-8859-1?Q?Ren=E9_Fournier?= <rene@fournier.test>
To: Quentin Vale <quentin@vale.example>,
 Ruth Vale <ruth@vale.example>,
\tSimon Vale <simon@vale.example>
Subject: {w0}
 {w1} {w2}
 {w3} {w4}
Date: Tue, 4 Jun 2024
 16:05:41 -0400
Message-ID:
 <fold-7731@fournier.test>
X-Long-Header: this header value is rather long and so it has been folded
  with two spaces and then folded again
\twith a tab
MIME-Version: 1.0
Content-Type: text/plain;
 charset="us-ascii";
 format=flowed

The price list for the autumn trip is attached in spirit only.
""".format(
        w0=subject_words[0], w1=subject_words[1], w2=subject_words[2], w3=subject_words[3],
        w4=subject_words[4],
    )
)
case(
    "headers-folded-encoded-subject",
    raw,
    "folded headers (space and tab), RFC 2047 subject mixing UTF-8 B, ISO-8859-1 Q and B, "
    "lower-case utf-8 q words; whitespace between adjacent encoded words is dropped",
    message_id="fold-7731@fournier.test",
    subject="Grüße aus Köln und Zürich – Preise ab € 100",
    date=ts(DATE),
    parties=parties(
        "rene@fournier.test", "quentin@vale.example", "ruth@vale.example", "simon@vale.example"
    ),
    **{"from": "rene@fournier.test"},
)

DATE = "Wed, 05 Jun 2024 11:00:00 +0000"
raw = crlf(
    r"""From: "Doe, Jane" <jane.doe@example.test>
To: "O'Brien, Pat \"Ops\"" <pat@ops.example>,
 carl@example.test (Carl, the intern),
 "bob@fake.test" <real.bob@example.test>,
 =?UTF-8?Q?M=C3=BCller=2C_Hans?= <hans.mueller@example.test>
Cc: "Team lead; acting" <lead@example.test>, <bare@brackets.example>
Subject: Seating plan
Date: Wed, 05 Jun 2024 11:00:00 +0000
Message-ID: <seating-plan-2@example.test>

Everyone keeps their desk except Carl, who moves next to the window.
"""
)
case(
    "headers-display-names",
    raw,
    "display names with quotes, escaped quotes, commas, a semicolon, an @ inside the "
    "quoted name, a comment with a comma, an encoded word decoding to a comma, bare <addr>",
    message_id="seating-plan-2@example.test",
    subject="Seating plan",
    date=ts(DATE),
    parties=parties(
        "jane.doe@example.test", "pat@ops.example", "carl@example.test",
        "real.bob@example.test", "hans.mueller@example.test", "lead@example.test",
        "bare@brackets.example",
    ),
    **{"from": "jane.doe@example.test"},
)

DATE = "Thu, 06 Jun 2024 08:12:00 +0100"
raw = crlf(
    """From: Flight Control <control@rocket.test>
To: Launch Team: ana@rocket.test, "Ben B." <ben@rocket.test>;, cleo@pad.example
Cc: Observers:;
Subject: Countdown rehearsal
Date: Thu, 06 Jun 2024 08:12:00 +0100
Message-ID: <rehearsal-5@rocket.test>

Rehearsal at T-minus two hours. Observers group is empty this time.
"""
)
case(
    "headers-group-syntax",
    raw,
    "To with a named group of two members followed by a plain address; an empty group in Cc",
    message_id="rehearsal-5@rocket.test",
    subject="Countdown rehearsal",
    date=ts(DATE),
    parties=parties(
        "control@rocket.test", "ana@rocket.test", "ben@rocket.test", "cleo@pad.example"
    ),
    **{"from": "control@rocket.test"},
)

DATE = "Fri, 07 Jun 2024 17:45:00 +0200"
raw = crlf(
    """From: Director Ilse Kern <ilse.kern@corp.example>
Sender: Assistant Tom Rau <tom.rau@corp.example>
Reply-To: Helpdesk <helpdesk@support.example>, backoffice@corp.example
To: Client Services <services@client.test>
Subject: Renewal of the service agreement
Date: Fri, 07 Jun 2024 17:45:00 +0200
Message-ID: <renewal-2024@corp.example>

Please send questions about the renewal to the helpdesk address.
"""
)
case(
    "headers-sender-reply-to",
    raw,
    "Sender and a two-address Reply-To that differ from From; all are parties",
    message_id="renewal-2024@corp.example",
    subject="Renewal of the service agreement",
    date=ts(DATE),
    parties=parties(
        "ilse.kern@corp.example", "tom.rau@corp.example", "helpdesk@support.example",
        "backoffice@corp.example", "services@client.test",
    ),
    **{"from": "ilse.kern@corp.example"},
)

DATE = "Sat, 08 Jun 2024 10:00:00 +0000"
raw = crlf(
    """From: Club Secretary <secretary@chess.test>
To: undisclosed-recipients:;
Cc: Treasurer <treasurer@chess.test>
Bcc: uma@members.example, victor@members.example,
 "Wendy W." <wendy@members.example>
Subject: Annual meeting minutes
Date: Sat, 08 Jun 2024 10:00:00 +0000
Message-ID: <minutes-2024@chess.test>

The minutes of the annual meeting are below.
"""
)
case(
    "headers-cc-bcc",
    raw,
    "To is the empty group undisclosed-recipients:; Cc and a folded Bcc list are parties",
    message_id="minutes-2024@chess.test",
    subject="Annual meeting minutes",
    date=ts(DATE),
    parties=parties(
        "secretary@chess.test", "treasurer@chess.test", "uma@members.example",
        "victor@members.example", "wendy@members.example",
    ),
    **{"from": "secretary@chess.test"},
)

DATE = "Sun, 09 Jun 2024 20:20:20 +0300"
raw = crlf(
    """Resent-From: Xavier Quill <xavier@quill.test>
Resent-Sender: relay-bot@quill.test
Resent-To: yara@elsewhere.example
Resent-Date: Mon, 10 Jun 2024 07:00:00 +0300
Resent-Message-ID: <resent-b@quill.test>
Resent-From: Zack Quill <zack@quill.test>
Resent-To: "Abe, Second" <abe@elsewhere.example>, Bea <bea@elsewhere.example>
Resent-Cc: cy@elsewhere.example
Resent-Bcc: dee@hidden.example
Resent-Date: Sun, 09 Jun 2024 22:00:00 +0300
Resent-Message-ID: <resent-a@quill.test>
From: Original Author <author@books.example>
To: Zack Quill <zack@quill.test>
Subject: Chapter nine draft
Date: Sun, 09 Jun 2024 20:20:20 +0300
Message-ID: <chapter-nine@books.example>

Here is chapter nine. It is still missing the ending.
"""
)
case(
    "headers-resent",
    raw,
    "two Resent-* blocks (From, Sender, To, Cc, Bcc); message_id and date come from "
    "Message-ID and Date, not the Resent- variants",
    message_id="chapter-nine@books.example",
    subject="Chapter nine draft",
    date=ts(DATE),
    parties=parties(
        "xavier@quill.test", "relay-bot@quill.test", "yara@elsewhere.example",
        "zack@quill.test", "abe@elsewhere.example", "bea@elsewhere.example",
        "cy@elsewhere.example", "dee@hidden.example", "author@books.example",
    ),
    **{"from": "author@books.example"},
)

DATE = "Mon, 10 Jun 2024 13:37:00 +0000"
raw = crlf(
    """From: Mary.Major@EXAMPLE.TEST
To: "Big Boss" <BigBoss@Corp.Example>, nobody.special@lower.test
Cc: sAm@MiXeD.Test
Subject: Case study
Date: Mon, 10 Jun 2024 13:37:00 +0000
Message-ID: <case-study-1@example.test>

Upper and lower case, all the same people.
"""
)
case(
    "headers-mixed-case",
    raw,
    "upper-case domains and mixed-case local parts: parties fully lower-cased, from keeps "
    "the local part as written with the domain lower-cased",
    message_id="case-study-1@example.test",
    subject="Case study",
    date=ts(DATE),
    parties=parties(
        "Mary.Major@example.test", "BigBoss@corp.example", "nobody.special@lower.test",
        "sAm@mixed.test",
    ),
    **{"from": "Mary.Major@example.test"},
)

DATE = "Tue, 11 Jun 2024 09:00:00 -0700"
raw = crlf(
    """From: Alice Dup <alice@dup.test>
Sender: alice@dup.test
Reply-To: ALICE@DUP.TEST
To: bob@dup.test, "Alice again" <Alice@Dup.Test>
Cc: BOB@dup.test, carol@dup.test
Bcc: carol@DUP.test
Subject: Said twice
Date: Tue, 11 Jun 2024 09:00:00 -0700
Message-ID: <said-twice@dup.test>

Each of us appears more than once above.
"""
)
case(
    "headers-duplicate-addresses",
    raw,
    "the same addresses repeated across From, Sender, Reply-To, To, Cc, Bcc in different "
    "cases: each party listed once",
    message_id="said-twice@dup.test",
    subject="Said twice",
    date=ts(DATE),
    parties=parties("alice@dup.test", "bob@dup.test", "carol@dup.test"),
    **{"from": "alice@dup.test"},
)

# --- MIME structure -----------------------------------------------------------------------

DATE = "Wed, 12 Jun 2024 12:00:00 +0000"
raw = crlf(
    """From: Newsletter <news@garden.test>
To: fern@reader.example
Subject: June in the garden
Date: Wed, 12 Jun 2024 12:00:00 +0000
Message-ID: <june-garden@garden.test>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="=_alt_4f1c"

This is a multi-part message in MIME format.

--=_alt_4f1c
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Time to plant the beans =E2=80=93 and to water twice a day.

--=_alt_4f1c
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<html><body><p>Time to plant the beans =E2=80=93 and to water twice a da=
y.</p></body></html>

--=_alt_4f1c--
"""
)
case(
    "mime-alternative",
    raw,
    "multipart/alternative with quoted-printable text and html parts and a preamble",
    message_id="june-garden@garden.test",
    subject="June in the garden",
    date=ts(DATE),
    parties=parties("news@garden.test", "fern@reader.example"),
    **{"from": "news@garden.test"},
)

csv_bytes = crlf(
    """month;spent;planned
January;1200;1000
February;950;1000
March;1010;1000
"""
)
DATE = "Thu, 13 Jun 2024 15:30:00 +0200"
raw = crlf(
    """From: Gus Ledger <gus@ledger.test>
To: Hana Ledger <hana@ledger.test>
Subject: Budget sheet
Date: Thu, 13 Jun 2024 15:30:00 +0200
Message-ID: <budget-sheet-q1@ledger.test>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mix-8d2e"

--mix-8d2e
Content-Type: text/plain; charset=us-ascii

The first quarter is attached.

--mix-8d2e
Content-Type: text/csv; name="q1.csv"
Content-Disposition: attachment; filename="q1.csv"
Content-Transfer-Encoding: base64

{b64}

--mix-8d2e--
""".format(b64=b64_lines(csv_bytes))
)
case(
    "mime-mixed-base64-attachment",
    raw,
    "multipart/mixed: text part plus a base64 text/csv attachment",
    message_id="budget-sheet-q1@ledger.test",
    subject="Budget sheet",
    date=ts(DATE),
    parties=parties("gus@ledger.test", "hana@ledger.test"),
    **{"from": "gus@ledger.test"},
)

DATE = "Fri, 14 Jun 2024 07:45:00 +0000"
raw = crlf(
    """From: Iris Studio <iris@studio.test>
To: Jon Client <jon@client.example>
Subject: Logo proposal
Date: Fri, 14 Jun 2024 07:45:00 +0000
Message-ID: <logo-proposal-3@studio.test>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer-mixed"

--outer-mixed
Content-Type: multipart/alternative; boundary="middle-alt"

--middle-alt
Content-Type: text/plain; charset=us-ascii

The proposal is inline in the HTML version; the brief is attached.

--middle-alt
Content-Type: multipart/related; boundary="inner-related"; type="text/html"

--inner-related
Content-Type: text/html; charset=us-ascii

<html><body><p>Proposal:</p><img src="cid:logo-1@studio.test"></body></html>

--inner-related
Content-Type: image/png
Content-ID: <logo-1@studio.test>
Content-Disposition: inline; filename="logo.png"
Content-Transfer-Encoding: base64

{png}

--inner-related--

--middle-alt--

--outer-mixed
Content-Type: text/plain; charset=us-ascii; name="brief.txt"
Content-Disposition: attachment; filename="brief.txt"

Round, green, readable at small sizes.

--outer-mixed--
""".format(png=b64_lines(tiny_png()))
)
case(
    "mime-nested-related-alternative-mixed",
    raw,
    "multipart/related inside multipart/alternative inside multipart/mixed, inline cid image",
    message_id="logo-proposal-3@studio.test",
    subject="Logo proposal",
    date=ts(DATE),
    parties=parties("iris@studio.test", "jon@client.example"),
    **{"from": "iris@studio.test"},
)

DATE = "Sat, 15 Jun 2024 18:00:00 +0000"
raw = crlf(
    """From: Dana Fwd <dana@forward.test>
To: Eli Fwd <eli@forward.test>
Subject: Fwd: Invoice question
Date: Sat, 15 Jun 2024 18:00:00 +0000
Message-ID: <fwd-invoice-9@forward.test>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="fwd-b1"

--fwd-b1
Content-Type: text/plain; charset=us-ascii

Eli, see the message below from the supplier.

--fwd-b1
Content-Type: message/rfc822
Content-Disposition: attachment; filename="invoice-question.eml"

From: Zed Supplier <zed@supplier.example>
To: Dana Fwd <dana@forward.test>
Cc: accounts@supplier.example
Bcc: hidden-boss@supplier.example
Reply-To: billing@supplier.example
Subject: Invoice question
Date: Fri, 14 Jun 2024 09:00:00 +0000
Message-ID: <inner-invoice-1@supplier.example>

Could you confirm the invoice number for the May order?

--fwd-b1--
"""
)
case(
    "mime-forwarded-rfc822",
    raw,
    "a forwarded message/rfc822 attachment: only the outer headers give parties, the "
    "inner From/Cc/Bcc/Reply-To do not; not a journal report",
    message_id="fwd-invoice-9@forward.test",
    subject="Fwd: Invoice question",
    date=ts(DATE),
    parties=parties("dana@forward.test", "eli@forward.test"),
    journal=False,
    stored_prefix="From: Dana Fwd <dana@forward.test>\r\n",
    **{"from": "dana@forward.test"},
)

# --- 8-bit --------------------------------------------------------------------------------

DATE = "Sun, 16 Jun 2024 10:10:10 +0300"
raw = crlf(
    """From: Kira Volk <kira@volk.test>
To: Lev Volk <lev@volk.test>
Subject: Recipe
Date: Sun, 16 Jun 2024 10:10:10 +0300
Message-ID: <recipe-borscht@volk.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Привет, Лев!
Свёкла, капуста, картофель — и немного укропа.
Ελληνικά και 日本語 also appear here, plus an emoji: 🍲
"""
)
case(
    "8bit-utf8-body",
    raw,
    "raw UTF-8 body with Content-Transfer-Encoding: 8bit, ASCII headers",
    message_id="recipe-borscht@volk.test",
    subject="Recipe",
    date=ts(DATE),
    parties=parties("kira@volk.test", "lev@volk.test"),
    **{"from": "kira@volk.test"},
)

DATE = "Mon, 17 Jun 2024 14:00:00 +0200"
raw = crlf(
    """From: Jörg Ünsal <jörg@bücher.test>
To: "Zoë Brandt" <zoë@BÜCHER.test>, 山田 <yamada@例え.test>
Cc: Ärger Stelle <ÄRGER@Bücher.Test>
Subject: Bücherliste für März
Date: Mon, 17 Jun 2024 14:00:00 +0200
Message-ID: <bücherliste-3@bücher.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Die Liste für März ist fertig. Grüße, Jörg
"""
)
case(
    "8bit-smtputf8-headers",
    raw,
    "raw UTF-8 (SMTPUTF8 style) in display names, local parts, domains and Subject; "
    "domain lower-casing keeps the unicode, parties fully lower-cased",
    message_id="bücherliste-3@bücher.test",
    subject="Bücherliste für März",
    date=ts(DATE),
    parties=parties("jörg@bücher.test", "zoë@bücher.test", "yamada@例え.test", "ärger@bücher.test"),
    **{"from": "jörg@bücher.test"},
)

DATE = "Tue, 18 Jun 2024 08:00:00 +0200"
raw = crlf(
    """From: Chloe Martin <chloe@cafe.test>
To: Denis Martin <denis@cafe.test>
Subject: =?ISO-8859-1?Q?Caf=E9_cr=E8me?=
Date: Tue, 18 Jun 2024 08:00:00 +0200
Message-ID: <cafe-creme-1@cafe.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: 8bit

Voilà, le café crème est prêt. À tout à l'heure, Chloé.
""",
    charset="latin-1",
)
case(
    "8bit-latin1-body",
    raw,
    "8-bit ISO-8859-1 body bytes (not valid UTF-8) with charset=iso-8859-1, Q-encoded subject",
    message_id="cafe-creme-1@cafe.test",
    subject="Café crème",
    date=ts(DATE),
    parties=parties("chloe@cafe.test", "denis@cafe.test"),
    **{"from": "chloe@cafe.test"},
)

# --- line endings -------------------------------------------------------------------------

DATE = "Wed, 19 Jun 2024 22:15:00 +0000"
raw = """From: Lena Unix <lena@unix.example>
To: Max Unix <max@unix.example>
Subject: Saved from a terminal
Date: Wed, 19 Jun 2024 22:15:00 +0000
Message-ID: <saved-lf-1@unix.example>
Content-Type: text/plain; charset=us-ascii

This file was written on Unix with bare LF line ends.
The stored copy has CRLF.
""".encode("ascii")
case(
    "lf-line-endings",
    raw,
    "a .eml with LF-only line ends: accepted and stored with CRLF",
    message_id="saved-lf-1@unix.example",
    subject="Saved from a terminal",
    date=ts(DATE),
    parties=parties("lena@unix.example", "max@unix.example"),
    stored_prefix="From: Lena Unix <lena@unix.example>\r\nTo: Max Unix <max@unix.example>\r\n",
    **{"from": "lena@unix.example"},
)

# --- missing or odd identifying headers ---------------------------------------------------

NO_ID_DATE = "Thu, 20 Jun 2024 06:00:00 +0000"
no_id_body = """From: Cron Daemon <cron@batch.test>
To: ops@batch.test
Subject: Nightly backup finished
Date: Thu, 20 Jun 2024 06:00:00 +0000

backup of /srv finished in 41 minutes, 0 errors
"""
raw = crlf(
    "Received: from batch.test by mx1.batch.test; Thu, 20 Jun 2024 06:00:01 +0000\n"
    + no_id_body
)
case(
    "id-no-message-id",
    raw,
    "no Message-ID header: message_id null; dedup falls back to From, Date, Subject and body",
    message_id=None,
    subject="Nightly backup finished",
    date=ts(NO_ID_DATE),
    parties=parties("cron@batch.test", "ops@batch.test"),
    **{"from": "cron@batch.test"},
)
raw = crlf(
    "Received: from mx1.batch.test by mx2.batch.test; Thu, 20 Jun 2024 06:00:03 +0000\n"
    "Received: from batch.test by mx1.batch.test; Thu, 20 Jun 2024 06:00:01 +0000\n"
    + no_id_body
)
case(
    "id-no-message-id-copy",
    raw,
    "a second copy of id-no-message-id that took another route (extra Received): same "
    "From, Date, Subject and body, so it merges",
    message_id=None,
    subject="Nightly backup finished",
    date=ts(NO_ID_DATE),
    parties=parties("cron@batch.test", "ops@batch.test"),
    same_dedup_as="id-no-message-id",
    **{"from": "cron@batch.test"},
)

raw = crlf(
    """From: Nora Nodate <nora@nodate.test>
To: Otto Nodate <otto@nodate.test>
Subject: No date on this one
Message-ID: <no-date-1@nodate.test>

My client forgot to add a Date header.
"""
)
case(
    "id-no-date",
    raw,
    "no Date header: date null",
    message_id="no-date-1@nodate.test",
    subject="No date on this one",
    date=None,
    parties=parties("nora@nodate.test", "otto@nodate.test"),
    **{"from": "nora@nodate.test"},
)

raw = crlf(
    """From: Paula Quiet <paula@quiet.test>
To: Quinn Quiet <quinn@quiet.test>
Subject: Not a date, honestly
Date: sometime next Tuesday, probably
Message-ID: <bad-date-1@quiet.test>

The Date header of this message cannot be parsed.
"""
)
case(
    "id-unparseable-date",
    raw,
    "a Date header that is not a date: date null, message still stored",
    message_id="bad-date-1@quiet.test",
    subject="Not a date, honestly",
    date=None,
    parties=parties("paula@quiet.test", "quinn@quiet.test"),
    **{"from": "paula@quiet.test"},
)

DATE = "Fri, 21 Jun 2024 12:34:56 +0000"
raw = crlf(
    """From: Paula Quiet <paula@quiet.test>
To: Quinn Quiet <quinn@quiet.test>
Subject:
Date: Fri, 21 Jun 2024 12:34:56 +0000
Message-ID: <empty-subject-1@quiet.test>

Subject left empty on purpose.
"""
)
case(
    "id-empty-subject",
    raw,
    "a Subject header with an empty value",
    message_id="empty-subject-1@quiet.test",
    subject="",
    date=ts(DATE),
    parties=parties("paula@quiet.test", "quinn@quiet.test"),
    **{"from": "paula@quiet.test"},
)

DATE = "Sat, 22 Jun 2024 09:09:09 +0000"
raw = crlf(
    """From: Rita Odd <rita@odd.test>
To: Sven Odd <sven@odd.test>
Subject: Odd identifier
Date: Sat, 22 Jun 2024 09:09:09 +0000
Message-ID: <  ABC.Def-77@Host.Test >

The Message-ID has spaces inside the brackets and mixed case.
"""
)
case(
    "id-odd-message-id",
    raw,
    "Message-ID with spaces inside the angle brackets and mixed case; its normalised form "
    "is not asserted, only that the message is stored",
    subject="Odd identifier",
    date=ts(DATE),
    parties=parties("rita@odd.test", "sven@odd.test"),
    **{"from": "rita@odd.test"},
)

# --- malformed but mail -------------------------------------------------------------------

DATE = "Sun, 23 Jun 2024 11:11:11 +0000"
raw = crlf(
    """From: Tara Broken <tara@broken.test>
To: Udo Broken <udo@broken.test>
Subject: Stray line in the header
Date: Sun, 23 Jun 2024 11:11:11 +0000
Message-ID: <stray-line-1@broken.test>
this line has no colon and is not a continuation
X-Mailer: Homegrown Mailer 0.1
X-Priority: 3

Body after the broken header block.
"""
)
case(
    "malformed-header-without-colon",
    raw,
    "a line without a colon in the middle of the header block (after the identifying "
    "headers, before two X- headers)",
    message_id="stray-line-1@broken.test",
    subject="Stray line in the header",
    date=ts(DATE),
    parties=parties("tara@broken.test", "udo@broken.test"),
    malformed=True,
    **{"from": "tara@broken.test"},
)

DATE = "Mon, 24 Jun 2024 10:00:00 +0000"
raw = crlf(
    """From: Vera Cut <vera@cut.test>
To: Walt Cut <walt@cut.test>
Subject: Where did the end go
Date: Mon, 24 Jun 2024 10:00:00 +0000
Message-ID: <no-close-1@cut.test>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="unclosed-b"

--unclosed-b
Content-Type: text/plain; charset=us-ascii

The plain part.

--unclosed-b
Content-Type: text/html; charset=us-ascii

<p>The html part, and then the file just ends.</p>
"""
)
case(
    "malformed-missing-closing-boundary",
    raw,
    "multipart/alternative whose closing --boundary-- line is missing",
    message_id="no-close-1@cut.test",
    subject="Where did the end go",
    date=ts(DATE),
    parties=parties("vera@cut.test", "walt@cut.test"),
    malformed=True,
    **{"from": "vera@cut.test"},
)

DATE = "Tue, 25 Jun 2024 10:30:00 +0000"
raw = crlf(
    """From: Xena Run <xena@run.test>
To: Yuri Run <yuri@run.test>
Subject: Everything runs together
Date: Tue, 25 Jun 2024 10:30:00 +0000
Message-ID: <run-on-1@run.test>
Hello Yuri, there is no empty line above this sentence
so every line of this file is in the header block
"""
)
case(
    "malformed-no-blank-line",
    raw,
    "no blank line between header block and body: the body lines sit in the header block "
    "(and have no colon)",
    message_id="run-on-1@run.test",
    subject="Everything runs together",
    date=ts(DATE),
    parties=parties("xena@run.test", "yuri@run.test"),
    malformed=True,
    **{"from": "xena@run.test"},
)

rng = random.Random(19)
blob = bytes(rng.getrandbits(8) for _ in range(1500))
encoded = b64_lines(blob)
b64_rows = encoded.split("\n")
cut = "\n".join(b64_rows[:10]) + "\n" + b64_rows[10][:37]  # stop mid-line, mid-quantum
DATE = "Wed, 26 Jun 2024 16:16:16 +0000"
raw = crlf(
    """From: Zora Trunc <zora@trunc.test>
To: Arno Trunc <arno@trunc.test>
Subject: Truncated upload
Date: Wed, 26 Jun 2024 16:16:16 +0000
Message-ID: <truncated-1@trunc.test>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="trunc-b"

--trunc-b
Content-Type: text/plain; charset=us-ascii

The attachment below was cut off in transit.

--trunc-b
Content-Type: application/octet-stream; name="data.bin"
Content-Disposition: attachment; filename="data.bin"
Content-Transfer-Encoding: base64

"""
) + cut.replace("\n", "\r\n").encode("ascii")
assert len(cut.rsplit("\n", 1)[1]) % 4 != 0
case(
    "malformed-truncated-base64",
    raw,
    "the file ends in the middle of a base64 attachment: partial last quantum, no closing "
    "boundary, no final line end",
    message_id="truncated-1@trunc.test",
    subject="Truncated upload",
    date=ts(DATE),
    parties=parties("zora@trunc.test", "arno@trunc.test"),
    malformed=True,
    **{"from": "zora@trunc.test"},
)

DATE = "Thu, 27 Jun 2024 09:00:00 +0000"
raw = crlf(
    """From: Bert Bound <bert@bound.test>
To: Cora Bound <cora@bound.test>
Subject: Boundary forgotten
Date: Thu, 27 Jun 2024 09:00:00 +0000
Message-ID: <no-boundary-1@bound.test>
MIME-Version: 1.0
Content-Type: multipart/mixed

--guess-me
Content-Type: text/plain

The Content-Type says multipart but names no boundary.
--guess-me--
"""
)
case(
    "malformed-multipart-without-boundary",
    raw,
    "Content-Type multipart/mixed without a boundary parameter",
    message_id="no-boundary-1@bound.test",
    subject="Boundary forgotten",
    date=ts(DATE),
    parties=parties("bert@bound.test", "cora@bound.test"),
    malformed=True,
    **{"from": "bert@bound.test"},
)

# --- refused ------------------------------------------------------------------------------

case("refused-empty", b"", "a zero-byte file", outcome="refused", refusal="empty")

rng = random.Random(20240628)
noise = bytes(rng.getrandbits(8) for _ in range(4096))
case(
    "refused-random-binary",
    noise,
    "4096 pseudo-random bytes (random.Random(20240628))",
    outcome="refused",
    refusal="not-mail",
)

prose = """Dear diary, today it rained again and the cat refused to go outside.
I finished the second half of the puzzle and found that three pieces are missing.
Tomorrow I will ask the neighbours whether they have seen them.
Nothing else happened, which was pleasant.
"""
case(
    "refused-prose",
    prose.encode("ascii"),
    "a plain text file of prose with no header lines at all (LF line ends)",
    outcome="refused",
    refusal="not-mail",
)

document = {
    "order": 4471,
    "customer": {"name": "Hedda Lund", "email": "hedda@shop.test"},
    "items": [{"sku": "TEA-01", "qty": 2}, {"sku": "CUP-07", "qty": 1}],
    "note": "From: the website, Subject: none",
}
case(
    "refused-json",
    (json.dumps(document, indent=2) + "\n").encode("ascii"),
    "a pretty-printed JSON document (its lines look a little like headers: \"key\": value)",
    outcome="refused",
    refusal="not-mail",
)

# --- Exchange / Office 365 journal reports ------------------------------------------------


def journal_report(report_id, date, subject, lines, original, cte, boundary="_jr_b_01_"):
    """An Exchange envelope journal report wrapping `original` (CRLF bytes)."""
    if cte in ("7bit", "8bit", "binary"):
        payload = original
    elif cte == "base64":
        payload = crlf(b64_lines(original)) + b"\r\n"
    elif cte == "quoted-printable":
        payload = qp_encode(original)
        if not payload.endswith(b"\r\n"):
            payload += b"\r\n"
    else:
        raise ValueError(cte)
    report_text = "\n".join(lines) + "\n"
    report_type = 'text/plain; charset="us-ascii"\nContent-Transfer-Encoding: 7bit'
    outer_subject = subject
    if not subject.isascii():
        # Exchange keeps the outer header ASCII and sends a non-ASCII report body as
        # quoted-printable UTF-8.
        outer_subject = "=?utf-8?B?" + base64.b64encode(subject.encode()).decode() + "?="
        report_text = qp_encode(crlf(report_text)).decode("ascii").replace("\r\n", "\n")
        report_type = 'text/plain; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable'
    head = crlf(
        """Received: from EX01.contoso.test (10.0.0.11) by EX02.contoso.test (10.0.0.12)
 with Microsoft SMTP Server id 15.2.1118.0; {date}
X-MS-Journal-Report:
From: {jfrom}
To: {jto}
Subject: {subject}
Date: {date}
Message-ID: <{report_id}>
Content-Type: multipart/mixed; boundary="{b}"
MIME-Version: 1.0
X-MS-Exchange-Organization-AuthAs: Internal
X-MS-Exchange-Organization-SCL: -1

--{b}
Content-Type: {report_type}

{lines}
--{b}
Content-Type: message/rfc822
Content-Disposition: attachment
Content-Transfer-Encoding: {cte}

""".format(
            date=date, jfrom=JOURNAL_FROM, jto=JOURNAL_TO, subject=outer_subject,
            report_id=report_id, b=boundary, lines=report_text, cte=cte,
            report_type=report_type,
        )
    )
    # The CRLF before a delimiter belongs to the delimiter (RFC 2046 §5.1.1), so the extra
    # one keeps the attachment byte-identical to `original`, final CRLF included.
    return head + payload + crlf("\n--{b}--\n".format(b=boundary))


# The original message of the dedup family: three copies follow.
ORIG1_DATE = "Tue, 02 Apr 2024 09:15:00 +0000"
orig1_rest = """From: Alice Archer <alice@contoso.test>
To: Bob Baker <bob@fabrikam.test>
Cc: carol@contoso.test
Subject: Quarterly numbers
Date: Tue, 02 Apr 2024 09:15:00 +0000
Message-ID: <orig-1@contoso.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii
Content-Transfer-Encoding: 7bit

Bob,

the numbers for the first quarter are in. Revenue is up four percent,
costs are flat. Details on Thursday.

Alice
"""
orig1_a = crlf(
    "Received: from ALICE-PC.contoso.test (10.0.1.23) by EX01.contoso.test (10.0.0.11)\n"
    " with Microsoft SMTP Server id 15.2.1118.0; Tue, 2 Apr 2024 09:15:02 +0000\n"
    + orig1_rest
)
raw = journal_report(
    "jr-0001@EX02.contoso.test",
    "Tue, 2 Apr 2024 09:15:04 +0000",
    "Quarterly numbers",
    [
        "Sender: alice@contoso.test",
        "Subject: Quarterly numbers",
        "Message-Id: <orig-1@contoso.test>",
        "To: bob@fabrikam.test",
        "Cc: carol@contoso.test, Expanded: sales@contoso.test",
        "Bcc: dave@contoso.test",
        "Recipient: erin@partner.test, Forwarded: frank@contoso.test",
    ],
    orig1_a,
    "7bit",
)
case(
    "journal-dedup-a",
    raw,
    "Exchange journal report, original attached 7bit; report lines with To, Cc+Expanded, "
    "Bcc, Recipient+Forwarded: all report addresses are parties, the journal mailbox and "
    "journal recipient are not",
    message_id="orig-1@contoso.test",
    subject="Quarterly numbers",
    date=ts(ORIG1_DATE),
    parties=parties(
        "alice@contoso.test", "bob@fabrikam.test", "carol@contoso.test", "sales@contoso.test",
        "dave@contoso.test", "erin@partner.test", "frank@contoso.test",
    ),
    journal=True,
    stored_prefix=first_line(orig1_a),
    **{"from": "alice@contoso.test"},
)

orig1_b = crlf(
    "Received: from EX01.contoso.test (10.0.0.11) by EX03.contoso.test (10.0.0.13)\n"
    " with Microsoft SMTP Server id 15.2.1118.0; Tue, 2 Apr 2024 09:15:07 +0000\n"
    "Received: from ALICE-PC.contoso.test (10.0.1.23) by EX01.contoso.test (10.0.0.11)\n"
    " with Microsoft SMTP Server id 15.2.1118.0; Tue, 2 Apr 2024 09:15:02 +0000\n"
    + orig1_rest
)
raw = journal_report(
    "jr-0002@EX03.contoso.test",
    "Tue, 2 Apr 2024 09:15:09 +0000",
    "Quarterly numbers",
    [
        "Sender: alice@contoso.test",
        "Subject: Quarterly numbers",
        "Message-Id: <orig-1@contoso.test>",
        "To: bob@fabrikam.test",
        "Bcc: hugo@contoso.test",
    ],
    orig1_b,
    "base64",
    boundary="_jr_b_02_",
)
case(
    "journal-dedup-b",
    raw,
    "a second journal report of journal-dedup-a's original from another server: other "
    "report lines, an extra Received on the original, attached base64; same Message-ID "
    "and body, so it merges",
    message_id="orig-1@contoso.test",
    subject="Quarterly numbers",
    date=ts(ORIG1_DATE),
    parties=parties(
        "alice@contoso.test", "bob@fabrikam.test", "carol@contoso.test", "hugo@contoso.test"
    ),
    journal=True,
    stored_prefix=first_line(orig1_b),
    same_dedup_as="journal-dedup-a",
    **{"from": "alice@contoso.test"},
)

raw = crlf(
    "Received: from EX01.contoso.test (ex01.contoso.test [10.0.0.11])\n"
    "\tby mx.archive.test (Postfix) with ESMTPS id 4VB2kQ0x7Zz9s\n"
    "\tfor <bob@fabrikam.test>; Tue,  2 Apr 2024 09:15:05 +0000 (UTC)\n"
    + orig1_rest
)
case(
    "dedup-plain-copy",
    raw,
    "the original of journal-dedup-a as a plain always_bcc copy (Postfix Received on top, "
    "no report): not a journal, merges with the journal copies",
    message_id="orig-1@contoso.test",
    subject="Quarterly numbers",
    date=ts(ORIG1_DATE),
    parties=parties("alice@contoso.test", "bob@fabrikam.test", "carol@contoso.test"),
    journal=False,
    stored_prefix="Received: from EX01.contoso.test (ex01.contoso.test [10.0.0.11])\r\n",
    same_dedup_as="journal-dedup-a",
    **{"from": "alice@contoso.test"},
)


def journal_case(name, cte, orig_text, orig_date, msgid, subject, sender, lines, expected,
                 description, charset="utf-8"):
    original = crlf(orig_text, charset)
    raw = journal_report(
        "jr-" + name + "@EX02.contoso.test",
        orig_date,
        subject,
        ["Sender: " + sender, "Subject: " + subject, "Message-Id: <" + msgid + ">"] + lines,
        original,
        cte,
    )
    case(
        name,
        raw,
        description,
        message_id=msgid,
        subject=subject,
        date=ts(orig_date),
        parties=parties(*expected),
        journal=True,
        stored_prefix=first_line(original),
        **{"from": sender},
    )


journal_case(
    "journal-7bit",
    "7bit",
    """Received: from mail.contoso.test (10.0.0.20) by EX01.contoso.test (10.0.0.11)
 with Microsoft SMTP Server id 15.2.1118.0; Wed, 3 Apr 2024 10:00:01 +0000
From: Gina Grant <gina@contoso.test>
Reply-To: grants-office@contoso.test
To: Ivan Iles <ivan@fabrikam.test>
Subject: Grant application status
Date: Wed, 03 Apr 2024 10:00:00 +0000
Message-ID: <grant-status-7@contoso.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Ivan, your application has reached the second round.
""",
    "Wed, 03 Apr 2024 10:00:00 +0000",
    "grant-status-7@contoso.test",
    "Grant application status",
    "gina@contoso.test",
    ["To: ivan@fabrikam.test", "Bcc: jules@contoso.test"],
    ["gina@contoso.test", "grants-office@contoso.test", "ivan@fabrikam.test",
     "jules@contoso.test"],
    "journal report, message/rfc822 attached 7bit; the original's Reply-To is a party, "
    "the Bcc is known only from the report",
)

journal_case(
    "journal-8bit",
    "8bit",
    """Received: from mail.contoso.test (10.0.0.20) by EX01.contoso.test (10.0.0.11)
 with Microsoft SMTP Server id 15.2.1118.0; Thu, 4 Apr 2024 11:00:01 +0200
From: Karin Köhler <karin@contoso.test>
To: Lars Løvland <lars@fabrikam.test>
Subject: Angebot für Ihr Büro
Date: Thu, 04 Apr 2024 11:00:00 +0200
Message-ID: <angebot-8bit@contoso.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Sehr geehrter Herr Løvland, anbei unser Angebot über 1.200 €.
""",
    "Thu, 04 Apr 2024 11:00:00 +0200",
    "angebot-8bit@contoso.test",
    "Angebot für Ihr Büro",
    "karin@contoso.test",
    ["To: lars@fabrikam.test", "Cc: sales@contoso.test, Expanded: team-dach@contoso.test"],
    ["karin@contoso.test", "lars@fabrikam.test", "sales@contoso.test",
     "team-dach@contoso.test"],
    "journal report, original attached 8bit with raw UTF-8 in its headers and body",
)

long_line = "0123456789abcdef" * 80  # 1280 octets: fine for binary, too long for 8bit
journal_case(
    "journal-binary",
    "binary",
    """Received: from mail.contoso.test (10.0.0.20) by EX01.contoso.test (10.0.0.11)
 with Microsoft SMTP Server id 15.2.1118.0; Fri, 5 Apr 2024 12:00:01 +0000
From: Mila Marsh <mila@contoso.test>
To: Nils Noor <nils@partner.test>
Subject: Raw export
Date: Fri, 05 Apr 2024 12:00:00 +0000
Message-ID: <raw-export-bin@contoso.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: binary

Export follows on one line (1280 octets), then a note with ünïcödé:
{long}
End of export.
""".format(long=long_line),
    "Fri, 05 Apr 2024 12:00:00 +0000",
    "raw-export-bin@contoso.test",
    "Raw export",
    "mila@contoso.test",
    ["To: nils@partner.test", "Recipient: oskar@partner.test"],
    ["mila@contoso.test", "nils@partner.test", "oskar@partner.test"],
    "journal report, original attached with Content-Transfer-Encoding: binary (8-bit and a "
    "line longer than 998 octets)",
)

journal_case(
    "journal-base64",
    "base64",
    """Received: from mail.contoso.test (10.0.0.20) by EX01.contoso.test (10.0.0.11)
 with Microsoft SMTP Server id 15.2.1118.0; Sat, 6 Apr 2024 13:00:01 +0000
From: Pia Paulsen <pia@contoso.test>
To: Rolf Ruud <rolf@fabrikam.test>, Saga Ruud <saga@fabrikam.test>
Subject: Møde på fredag
Date: Sat, 06 Apr 2024 13:00:00 +0000
Message-ID: <moede-b64@contoso.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Hej begge, mødet flyttes til fredag kl. 10.
""",
    "Sat, 06 Apr 2024 13:00:00 +0000",
    "moede-b64@contoso.test",
    "Møde på fredag",
    "pia@contoso.test",
    ["To: rolf@fabrikam.test", "To: saga@fabrikam.test",
     "Bcc: tove@contoso.test, Forwarded: ulf@contoso.test"],
    ["pia@contoso.test", "rolf@fabrikam.test", "saga@fabrikam.test", "tove@contoso.test",
     "ulf@contoso.test"],
    "journal report, message/rfc822 attachment base64-encoded (as Office 365 does); stored "
    "bytes are the decoded original",
)

journal_case(
    "journal-quoted-printable",
    "quoted-printable",
    """Received: from mail.contoso.test (10.0.0.20) by EX01.contoso.test (10.0.0.11)
 with Microsoft SMTP Server id 15.2.1118.0; Sun, 7 Apr 2024 14:00:01 +0000
From: Vivi Varga <vivi@contoso.test>
To: Will Wolff <will@fabrikam.test>
Subject: Price = cost + margin
Date: Sun, 07 Apr 2024 14:00:00 +0000
Message-ID: <price-qp@contoso.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Will, the formula is price = cost + margin, and the margin is 12 %.
This line is deliberately long so that the quoted-printable encoding of the attachment has to break it with a soft line break.
Ends with spaces   
Ünterschrift: Vivi
""",
    "Sun, 07 Apr 2024 14:00:00 +0000",
    "price-qp@contoso.test",
    "Price = cost + margin",
    "vivi@contoso.test",
    ["To: will@fabrikam.test", "Cc: xena@contoso.test"],
    ["vivi@contoso.test", "will@fabrikam.test", "xena@contoso.test"],
    "journal report, message/rfc822 attachment quoted-printable encoded (=3D, soft breaks, "
    "encoded trailing space and 8-bit); stored bytes are the decoded original",
)

journal_case(
    "journal-recipient-lines-only",
    "7bit",
    """Received: from mail.contoso.test (10.0.0.20) by EX01.contoso.test (10.0.0.11)
 with Microsoft SMTP Server id 15.2.1118.0; Mon, 8 Apr 2024 15:00:01 +0000
From: Ivy Irwin <ivy@contoso.test>
To: Jack Jansen <jack@partner.test>
Cc: kim@partner.test
Subject: Contract draft v3
Date: Mon, 08 Apr 2024 15:00:00 +0000
Message-ID: <draft-v3@contoso.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Draft three attached in the usual place.
""",
    "Mon, 08 Apr 2024 15:00:00 +0000",
    "draft-v3@contoso.test",
    "Contract draft v3",
    "ivy@contoso.test",
    ["Recipient: jack@partner.test", "Recipient: kim@partner.test",
     "Recipient: legal-archive@outside.test"],
    ["ivy@contoso.test", "jack@partner.test", "kim@partner.test",
     "legal-archive@outside.test"],
    "Office 365 style report listing recipients only as Recipient: lines (To/Cc/Bcc "
    "unknown); a recipient absent from the original headers is still a party",
)

DATE = "Tue, 09 Apr 2024 16:00:00 +0000"
raw = crlf(
    """From: IT Admin <it-admin@contoso.test>
To: Helpdesk <helpdesk@contoso.test>
Subject: Quarterly numbers
Date: Tue, 09 Apr 2024 16:00:00 +0000
Message-ID: <fake-journal-1@contoso.test>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="fake-jr"

--fake-jr
Content-Type: text/plain; charset="us-ascii"

Sender: mallory@outside.test
Subject: Quarterly numbers
Message-Id: <orig-1@contoso.test>
To: victim@contoso.test
Bcc: ceo@contoso.test

--fake-jr
Content-Type: message/rfc822

From: Mallory <mallory@outside.test>
To: victim@contoso.test
Subject: Quarterly numbers
Date: Tue, 09 Apr 2024 15:00:00 +0000
Message-ID: <orig-1@contoso.test>

Not the real quarterly numbers.

--fake-jr--
"""
)
case(
    "journal-lookalike-without-header",
    raw,
    "shaped like a journal report but without X-MS-Journal-Report: not unwrapped, only the "
    "outer headers give parties",
    message_id="fake-journal-1@contoso.test",
    subject="Quarterly numbers",
    date=ts(DATE),
    parties=parties("it-admin@contoso.test", "helpdesk@contoso.test"),
    journal=False,
    stored_prefix="From: IT Admin <it-admin@contoso.test>\r\n",
    **{"from": "it-admin@contoso.test"},
)

# --- big and hostile ----------------------------------------------------------------------

domains = ["north.test", "south.example", "east.test", "west.example", "Centre.TEST"]
many = []
for i in range(300):
    local = "member%03d" % (i + 1)
    addr = "%s@%s" % (local, domains[i % len(domains)])
    many.append('"Member %d" <%s>' % (i + 1, addr) if i % 3 == 0 else addr)
DATE = "Wed, 10 Apr 2024 08:00:00 +0000"
raw = crlf(
    "From: Mailing Robot <robot@list.test>\n"
    "To: " + ",\n ".join(many) + "\n"
    "Subject: Three hundred recipients\n"
    "Date: Wed, 10 Apr 2024 08:00:00 +0000\n"
    "Message-ID: <three-hundred@list.test>\n"
    "\n"
    "One message, a very long To header.\n"
)
case(
    "big-300-recipients",
    raw,
    "a To header of 300 addresses folded one per line, some with display names, one domain "
    "upper-case",
    message_id="three-hundred@list.test",
    subject="Three hundred recipients",
    date=ts(DATE),
    parties=parties(
        "robot@list.test",
        *["member%03d@%s" % (i + 1, domains[i % len(domains)]) for i in range(300)],
    ),
    **{"from": "robot@list.test"},
)

DATE = "Thu, 11 Apr 2024 09:00:00 +0000"
traces = "".join(
    "X-Trace-%d: hop %d via relay%02d.trace.test id %08x\n" % (n, n, n % 50, n * 2654435761 % 2**32)
    for n in range(1, 501)
)
raw = crlf(
    "From: Tracer <tracer@trace.test>\n"
    "To: Sink <sink@trace.test>\n"
    "Subject: Five hundred trace headers\n"
    "Date: Thu, 11 Apr 2024 09:00:00 +0000\n"
    "Message-ID: <five-hundred@trace.test>\n"
    + traces
    + "\nA long header block, a short body.\n"
)
case(
    "big-500-headers",
    raw,
    "a header block of 505 fields, 500 of them X-Trace-N",
    message_id="five-hundred@trace.test",
    subject="Five hundred trace headers",
    date=ts(DATE),
    parties=parties("tracer@trace.test", "sink@trace.test"),
    **{"from": "tracer@trace.test"},
)

DEPTH = 200
DATE = "Fri, 12 Apr 2024 10:00:00 +0000"
parts = [
    "From: Deep Diver <diver@deep.test>\n"
    "To: Surface <surface@deep.test>\n"
    "Subject: Two hundred levels down\n"
    "Date: Fri, 12 Apr 2024 10:00:00 +0000\n"
    "Message-ID: <two-hundred-levels@deep.test>\n"
    "MIME-Version: 1.0\n"
    'Content-Type: multipart/mixed; boundary="lvl-000"\n'
    "\n"
]
for level in range(1, DEPTH):
    parts.append(
        '--lvl-%03d\nContent-Type: multipart/mixed; boundary="lvl-%03d"\n\n' % (level - 1, level)
    )
parts.append("--lvl-%03d\nContent-Type: text/plain\n\nthe bottom\n" % (DEPTH - 1))
for level in range(DEPTH - 1, -1, -1):
    parts.append("--lvl-%03d--\n" % level)
raw = crlf("".join(parts))
case(
    "hostile-nested-200",
    raw,
    "200 levels of nested multipart/mixed, each with its own boundary, properly closed: "
    "stored without crashing (malformed not asserted)",
    message_id="two-hundred-levels@deep.test",
    subject="Two hundred levels down",
    date=ts(DATE),
    parties=parties("diver@deep.test", "surface@deep.test"),
    **{"from": "diver@deep.test"},
)


def main():
    names = set()
    for name, raw, result in CASES:
        assert name not in names, name
        names.add(name)
        (HERE / (name + ".eml")).write_bytes(raw)
        text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
        (HERE / (name + ".json")).write_text(text, encoding="utf-8")
    print("wrote %d cases" % len(CASES))


if __name__ == "__main__":
    main()
