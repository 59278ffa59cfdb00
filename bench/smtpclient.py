#!/usr/bin/env python3
"""Measures SMTP/LMTP acknowledgement latency the way a journaling MTA sees it, and reads
latency quantiles from a Prometheus text endpoint.

  smtpclient.py latency --port P [--lmtp] [--sessions N] [--messages N] [--size BYTES]
      Each session sends its share of messages over one connection; the latency of a
      message is the time from writing the final CRLF.CRLF to reading the reply. Prints
      one line: `messages=N rate=R p50_ms=X p99_ms=Y max_ms=Z errors=E`.

  smtpclient.py quantiles --metric NAME --label K=V BEFORE AFTER
      Quantiles 0.5 and 0.99 of a histogram between two scrapes (bucket deltas, linear
      within a bucket), or of a summary in the second scrape. Prints `p50_ms=X p99_ms=Y`
      or `none` when the metric is absent.
"""

import argparse
import os
import re
import socket
import sys
import threading
import time


class Session:
    def __init__(self, port, lmtp):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        # Without it the final ".\r\n" waits for the ACK of the body (Nagle against
        # delayed ACK): 40 ms of latency that belongs to neither server.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")
        self.expect("220")
        self.command("LHLO bench.test" if lmtp else "EHLO bench.test", "250")

    def reply(self):
        lines = []
        while True:
            line = self.reader.readline()
            if not line:
                raise ConnectionError("connection closed")
            lines.append(line.decode("latin-1").rstrip("\r\n"))
            if len(line) < 4 or line[3:4] != b"-":
                return lines

    def expect(self, code):
        lines = self.reply()
        if not lines[-1].startswith(code):
            raise RuntimeError(f"expected {code}, got {lines[-1]!r}")
        return lines

    def command(self, text, code):
        self.sock.sendall(text.encode() + b"\r\n")
        return self.expect(code)

    def send(self, body):
        """Sends one message; returns the seconds from end of data to the reply."""
        self.command("MAIL FROM:<bench@corp.test>", "250")
        self.command("RCPT TO:<archive@bcc.test>", "250")
        self.command("DATA", "354")
        self.sock.sendall(body)
        start = time.perf_counter()
        self.sock.sendall(b".\r\n")
        self.expect("250")
        return time.perf_counter() - start

    def close(self):
        try:
            self.command("QUIT", "221")
        except (OSError, RuntimeError):
            pass
        self.sock.close()


def message(session, n, size):
    head = (
        f"From: Bench <bench@corp.test>\r\nTo: <archive@bcc.test>\r\n"
        f"Subject: latency probe {session}.{n}\r\n"
        f"Message-ID: <{os.getpid()}.{session}.{n}.{time.time_ns()}@bench.test>\r\n"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n\r\n"
    )
    line = "the quarterly figures are attached, please review them before friday\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return (head + body).encode()


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return sorted_values[index]


def latency(args):
    per_session = [args.messages // args.sessions] * args.sessions
    for i in range(args.messages % args.sessions):
        per_session[i] += 1
    samples, errors, lock = [], [], threading.Lock()

    def run(index, count):
        try:
            session = Session(args.port, args.lmtp)
            mine = [session.send(message(index, n, args.size)) for n in range(count)]
            session.close()
        except (OSError, RuntimeError) as e:
            with lock:
                errors.append(str(e))
            return
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(per_session)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    samples.sort()
    print(
        f"messages={len(samples)} rate={len(samples) / elapsed:.0f} "
        f"p50_ms={percentile(samples, 0.5) * 1000:.2f} "
        f"p99_ms={percentile(samples, 0.99) * 1000:.2f} "
        f"max_ms={(samples[-1] if samples else float('nan')) * 1000:.2f} errors={len(errors)}"
    )
    for e in errors[:3]:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = SAMPLE.match(line)
            if m:
                labels = dict(LABEL.findall(m.group(2) or ""))
                out.append((m.group(1), labels, float(m.group(3))))
    return out


def buckets(samples, metric, want):
    result = {}
    for name, labels, value in samples:
        if name == metric + "_bucket" and want.items() <= labels.items():
            le = labels["le"]
            result[float("inf") if le == "+Inf" else float(le)] = value
    return result


def from_buckets(counts, q):
    bounds = sorted(counts)
    total = counts[bounds[-1]]
    if total <= 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        if counts[bound] >= rank:
            if bound == float("inf"):
                return lower
            width = counts[bound] - below
            return lower + (bound - lower) * ((rank - below) / width if width else 1)
        lower, below = bound, counts[bound]
    return lower


def quantiles(args):
    want = dict(kv.split("=", 1) for kv in args.label)
    before, after = scrape(args.before), scrape(args.after)
    after_buckets = buckets(after, args.metric, want)
    if after_buckets:
        before_buckets = buckets(before, args.metric, want)
        delta = {b: v - before_buckets.get(b, 0.0) for b, v in after_buckets.items()}
        p50, p99 = from_buckets(delta, 0.5), from_buckets(delta, 0.99)
        print(f"p50_ms={p50 * 1000:.2f} p99_ms={p99 * 1000:.2f} (histogram buckets)")
        return 0
    summary = {
        labels["quantile"]: value
        for name, labels, value in after
        if name == args.metric and "quantile" in labels and want.items() <= labels.items()
    }
    if "0.5" in summary and "0.99" in summary:
        print(
            f"p50_ms={summary['0.5'] * 1000:.2f} p99_ms={summary['0.99'] * 1000:.2f} "
            "(summary, the exporter's rolling window)"
        )
        return 0
    print("none")
    return 0


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--port", type=int, required=True)
    lat.add_argument("--lmtp", action="store_true")
    lat.add_argument("--sessions", type=int, default=10)
    lat.add_argument("--messages", type=int, default=1000)
    lat.add_argument("--size", type=int, default=4096)
    qs = sub.add_parser("quantiles")
    qs.add_argument("--metric", required=True)
    qs.add_argument("--label", action="append", default=[])
    qs.add_argument("before")
    qs.add_argument("after")
    args = parser.parse_args()
    sys.exit(latency(args) if args.command == "latency" else quantiles(args))


if __name__ == "__main__":
    main()
