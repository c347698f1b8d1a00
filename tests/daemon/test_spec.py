#!/usr/bin/python3
"""PROTOCOL.md against the daemon, the config schema and conf/rwkvd.yaml, so they cannot drift.

Usage: test_spec.py NAME   (NAME = one of the test_* functions below, without the prefix)
Environment as test_rwkvd.py, plus RWKVD_CONF (conf/rwkvd.yaml) and RWKVD_PROTOCOL
(proto/PROTOCOL.md). Every receive has a timeout; a failure raises and exits 1.

  ranges       the generation parameters: the §6.4 table (ranges and defaults), the comments
               of conf/rwkvd.yaml (a continue profile's generate section) and what the code
               accepts, both in the config (rwkvd --check-config at each bound and just past
               it) and in a GEN payload (ACK at each bound, 422 just past it)
  gen_payload  §6.4's rules for GEN payload edge cases: duplicate members, 1.0 as an integer,
               a byte-order mark, a number beyond binary64 (1e400), null members and payloads
  limits       §14: every limit the table names a config key for is in conf/rwkvd.yaml, and the
               defaults the table and STATUS limits give agree with the conf
  dup_order    §6.2/§12: a duplicate is answered DUP before the checks that need daemon state
               or look at its contents (unknown profile, token id beyond n_vocab, bad GEN)
  cancel_paused §6.3: a CANCEL of a paused pair is 425 and cancels nothing; after SYNC it acts
"""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_rwkvd as T  # noqa: E402  (skips with 77 when zmq/numpy are missing)
from test_rwkvd import Daemon, check, recv, send  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PROTOCOL = os.environ.get("RWKVD_PROTOCOL", os.path.join(HERE, "..", "..", "proto", "PROTOCOL.md"))
CONF = os.environ.get("RWKVD_CONF", os.path.join(HERE, "..", "..", "conf", "rwkvd.yaml"))

NUM = r"[−-]?\d+(?:\.\d+)?"


def number(text):
    text = text.replace("−", "-").strip()
    m = re.fullmatch(r"2\^(\d+)\s*-\s*1", text)
    if m:
        return 2 ** int(m.group(1)) - 1
    return float(text) if "." in text else int(text)


def spec_table():
    """member -> dict(type, lo, hi, lo_open, default) from the §6.4 table."""
    text = open(PROTOCOL, encoding="utf-8").read()
    sec = text[text.index("### 6.4 Generation parameters"):text.index("## 7. Ingest replies")]
    rows = {}
    for line in sec.splitlines():
        m = re.match(r"\| `(\w+)` \|\s*([^|]+?)\s*\|\s*([^|]*?)\s*\|\s*([^|]*?)\s*\|", line)
        if not m or m.group(1) == "member":
            continue
        name, typ, rng, dflt = m.group(1), m.group(2).strip(), m.group(3).strip(), m.group(4).strip()
        row = {"type": typ, "default": dflt}
        r = re.match(r"(greater than )?(%s)(?:, at most |\.\.)(%s)" % (NUM, NUM), rng)
        if r and typ in ("integer", "number"):
            row.update(lo=number(r.group(2)), hi=number(r.group(3)), lo_open=bool(r.group(1)))
        rows[name] = row
    return rows


def conf_generate():
    """key -> dict(lo, hi, lo_open, default) from the generate keys documented in conf/rwkvd.yaml."""
    text = open(CONF, encoding="utf-8").read()
    sec = text[text.index("#   generate "):text.index("  profiles:")]
    keys, cur = {}, None
    for line in sec.splitlines():
        m = re.match(r"\s*#     (\w+)\s+(.*)", line)
        if m:
            cur = keys.setdefault(m.group(1), {"text": ""})
            cur["text"] += " " + m.group(2)
        elif cur is not None:
            cur["text"] += " " + line.lstrip(" #")
    out = {}
    for k, v in keys.items():
        d = {}
        m = re.search(r"Default: (\S+?)\.?(?:\s|$)", v["text"])
        if m:
            d["default"] = m.group(1)
        m = re.search(r"Range: (above )?(%s) ?\.\. ?(2\^\d+-1|%s)" % (NUM, NUM), v["text"])
        if m:
            d.update(lo=number(m.group(2)), hi=number(m.group(3)), lo_open=bool(m.group(1)))
        out[k] = d
    return out


def fmt(v, integer):
    return str(int(v)) if integer else repr(float(v))


def probes(row, integer):
    """(value, accepted) pairs at and just past each bound."""
    lo, hi = row["lo"], row["hi"]
    step = 1 if integer else 0.001 * max(1.0, abs(hi) / 100)
    out = [(hi, True), (hi + step, False)]
    if row["lo_open"]:
        out += [(lo, False), (lo + step, True)]
    else:
        out += [(lo, True), (lo - step, False)]
    return out


def test_ranges():
    spec = spec_table()
    conf = conf_generate()
    numeric = {k: r for k, r in spec.items() if "lo" in r}
    check(set(numeric) == {"max_tokens", "temperature", "top_p", "top_k", "presence_penalty", "frequency_penalty",
                           "penalty_decay", "seed"}, "numeric members of the §6.4 table: %r" % sorted(numeric))
    check(set(spec) == set(conf), "§6.4 members %r, conf generate keys %r" % (sorted(spec), sorted(conf)))
    # the documents agree
    for k, r in numeric.items():
        c = conf[k]
        check((c.get("lo"), c.get("hi"), c.get("lo_open")) == (r["lo"], r["hi"], r["lo_open"]),
              "%s: PROTOCOL.md §6.4 range %r..%r, conf/rwkvd.yaml %r..%r" %
              (k, r["lo"], r["hi"], c.get("lo"), c.get("hi")))
        if k != "seed":  # the spec's seed is the daemon's choice; a profile's defaults to 42
            check(number(c["default"]) == number(r["default"]),
                  "%s: default %s in PROTOCOL.md §6.4, %s in conf/rwkvd.yaml" % (k, r["default"], c["default"]))
    # the config schema accepts exactly those ranges
    d = Daemon(start=False)
    try:
        for k, r in numeric.items():
            integer = r["type"] == "integer"
            for v, ok in probes(r, integer):
                with open(d.conf) as f:
                    base = f.read()
                prof = "    g:\n      kind: continue\n      generate: {%s: %s}\n" % (k, fmt(v, integer))
                path = d.conf + ".probe"
                with open(path, "w") as f:
                    f.write(base.replace("  profiles: {}", "  profiles:\n" + prof))
                res = subprocess.run([T.RWKVD, "--check-config", "-c", path], capture_output=True, text=True)
                check((res.returncode == 0) == ok, "config generate.%s: %s should be %s: %r" %
                      (k, fmt(v, integer), "accepted" if ok else "refused", res.stderr.strip()[-300:]))
    finally:
        d.close()
    # ... and so does a GEN payload
    d = Daemon()
    try:
        s = d.dealer()
        seq = 0
        for k, r in numeric.items():
            integer = r["type"] == "integer"
            for v, ok in probes(r, integer):
                seq += 1
                body = '{"%s":%s%s}' % (k, fmt(v, integer), "" if k == "max_tokens" else ',"max_tokens":1')
                send(s, b"GEN", b"g", b"p", seq, body.encode())
                rep = recv(s, what="reply to GEN %s" % body)
                check((rep[1] == b"ACK") == ok and (ok or rep[5] == b"422"),
                      "GEN %s: expected %s, got %r" % (body, "ACK" if ok else "422", rep))
                if ok:
                    seq += 1
                    send(s, b"CANCEL", b"g", b"p", seq)
                    recv(s, what="reply to CANCEL")
    finally:
        d.close()


def test_gen_payload():
    """Each edge case gets the code §6.4 gives it."""
    cases = [
        (b'{"max_tokens":2,"max_tokens":3}', 400),   # duplicate member: not a valid object (§4.7)
        (b'{"max_tokens":2.0}', 422),                 # an integer is written without fraction
        (b'{"max_tokens":1e0}', 422),                 # ... or exponent
        (b'\xef\xbb\xbf{"max_tokens":2}', 400),       # a byte-order mark: not a JSON object
        (b'{"temperature":1e400}', 400),              # beyond binary64
        (b'{"temperature":null}', 422),               # null is a member of the wrong type
        (b'null', 400),                               # not an object
        (b'[]', 400),
        (b'{"max_tokens":2} ', 0),                    # whitespace around the object is JSON
        (b'{"temperature":1E2,"max_tokens":1}', 0),   # exponents are fine for numbers
        (b'{"max_tokens":2}x', 400),
        (b'{"unknown":1}', 422),
    ]
    d = Daemon()
    try:
        s = d.dealer()
        seq = 0
        for body, code in cases:
            seq += 1
            send(s, b"GEN", b"e", b"p", seq, body)
            rep = recv(s, what="reply to GEN %r" % body)
            if code:
                check(rep[1] == b"ERROR" and rep[5] == str(code).encode(), "GEN %r: expected %d, got %r" %
                      (body, code, rep))
            else:
                check(rep[1] == b"ACK", "GEN %r: expected ACK, got %r" % (body, rep))
                seq += 1
                send(s, b"CANCEL", b"e", b"p", seq)
                recv(s, what="reply to CANCEL")
    finally:
        d.close()


def conf_value(section, key):
    text = open(CONF, encoding="utf-8").read()
    m = re.search(r"^%s:.*?(?=^\S)" % section, text + "\nEND", re.S | re.M)
    check(m, "conf/rwkvd.yaml has no section %s" % section)
    v = re.search(r"^  %s: (.*)$" % key, m.group(0), re.M)
    check(v, "conf/rwkvd.yaml has no %s.%s" % (section, key))
    return v.group(1).strip()


def size(text):
    m = re.fullmatch(r"(\d+)\s*(B|KiB|MiB|GiB)?", text.strip())
    check(m, "not a size: %r" % text)
    return int(m.group(1)) * {None: 1, "B": 1, "KiB": 1024, "MiB": 1 << 20, "GiB": 1 << 30}[m.group(2)]


def test_limits():
    text = open(PROTOCOL, encoding="utf-8").read()
    sec = text[text.index("## 14. Limits"):text.index("## 15.")]
    keys = {}
    for line in sec.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4:
            continue
        m = re.search(r"rwkvd: `(\w+)\.(\w+)`", cells[2])
        if m:
            keys[(m.group(1), m.group(2))] = cells[1]
    check(("limits", "max_message_bytes") in keys and ("limits", "max_queue_tokens") in keys and
          ("endpoints", "ingest_reply_hwm") in keys, "§14 names the config keys: %r" % keys)
    conf = {k: conf_value(*k) for k in keys}
    msg_default = keys[("limits", "max_message_bytes")]
    m = re.search(r"\((\d+) octets\)", msg_default)
    check(m and int(m.group(1)) == size(conf[("limits", "max_message_bytes")]),
          "§14 message size %r, conf %r" % (msg_default, conf[("limits", "max_message_bytes")]))
    d = Daemon()
    try:
        lim = d.control_json(b"STATUS")["limits"]
        check(lim["max_message_bytes"] == size(conf[("limits", "max_message_bytes")]) and
              lim["max_queue_tokens"] == int(conf[("limits", "max_queue_tokens")]) and
              lim["ingest_reply_hwm"] == int(conf[("endpoints", "ingest_reply_hwm")]),
              "STATUS limits %r against conf defaults %r" % (lim, conf))
        check(lim["separator_tokens"] == 1, "the default separator is one token: %r" % lim)
    finally:
        d.close()


def test_dup_order():
    d = Daemon()
    try:
        s = d.dealer()
        n_vocab = d.control_json(b"STATUS")["model"]["n_vocab"]
        send(s, b"TEXT", b"u", b"p", 5, b"first")
        r = recv(s)
        check(r[1] == b"ACK", "first message %r" % r)
        bad_ids = bytes([0xff, 0xff, 0, 0])  # id 65535, beyond the test model's vocabulary
        check(n_vocab <= 65535, "test model vocabulary %d" % n_vocab)
        for op, seq, payload in ((b"TASK", 2, b"nosuch"), (b"TOKENS", 3, bad_ids), (b"GEN", 4, b'{"bogus":1}'),
                                 (b"TOKENS", 5, bad_ids)):
            send(s, op, b"u", b"p", seq, payload)
            r = recv(s)
            check(r[1] == b"DUP" and r[5] == b"5", "%s seq %d (a duplicate): %r" % (op.decode(), seq, r))
        send(s, b"TOKENS", b"u", b"p", 6, bad_ids)
        r = recv(s)
        check(r[1] == b"ERROR" and r[5] == b"422", "the same TOKENS as a new seq: %r" % r)
        # a duplicate that is malformed in its own frames is still an error
        send(s, b"TEXT", b"u", b"p", 5, b"\xff")
        r = recv(s)
        check(r[1] == b"ERROR" and r[5] == b"415", "bad UTF-8 under a duplicate seq: %r" % r)
    finally:
        d.close()


def test_cancel_paused():
    d = Daemon(extra="limits:\n  max_queue_tokens: 64", env={"RWKVD_TEST_STEP_DELAY_MS": "200"})
    try:
        s = d.dealer()
        send(s, b"TEXT", b"c", b"p", 1, b"hi")
        check(recv(s)[1] == b"ACK", "TEXT")
        send(s, b"GEN", b"c", b"p", 2, b'{"max_tokens":60000}')
        check(recv(s)[1] == b"ACK", "GEN")
        deadline = time.time() + 10
        while not d.control_json(b"INFO", b"c")["generating"]:
            check(time.time() < deadline, "the generation did not start")
            time.sleep(0.05)
        send(s, b"TOKENS", b"c", b"p", 3, bytes(4 * 64))
        r = recv(s)
        send(s, b"TOKENS", b"c", b"p", 4, bytes(4 * 64))
        r = recv(s)
        check(r[1] == b"ERROR" and r[5] == b"429", "a full queue: %r" % r)
        send(s, b"CANCEL", b"c", b"p", 5)
        r = recv(s)
        check(r[1] == b"ERROR" and r[5] == b"425", "CANCEL while paused: %r" % r)
        check(d.control_json(b"INFO", b"c")["generating"], "a 425 CANCEL cancelled the generation")
        send(s, b"SYNC", b"c", b"p", 0)
        check(recv(s)[1] == b"CREDIT", "SYNC")
        send(s, b"CANCEL", b"c", b"p", 5)
        r = recv(s)
        check(r[1] == b"ACK", "CANCEL after SYNC: %r" % r)
        deadline = time.time() + 10
        while d.control_json(b"INFO", b"c")["generating"]:
            check(time.time() < deadline, "CANCEL after SYNC did not cancel")
            time.sleep(0.05)
    finally:
        d.close()


if __name__ == "__main__":
    T.run_named(globals(), "test_spec.py")
