#!/usr/bin/env python3
"""Client tests against scripted fake daemons (pyzmq), no rwkvd needed.

Each fake binds tcp://127.0.0.1:* and answers from a script, so the protocol corners that a
real daemon rarely shows on demand are exercised deterministically: credit, 429 then CREDIT,
a reply that never comes (resend, DUP), non-retryable rejections, a restart that forgot the
pair (state file), exit codes and argument errors of the three tools, and the Python client.
Every wait has a timeout. Exit 77 when pyzmq is missing.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time

try:
    import zmq
except ImportError:
    print("pyzmq (python3-zmq) not installed: skipped")
    sys.exit(77)

RWKVCAT, RWKVSUB, RWKVCTL = os.environ["RWKVCAT"], os.environ["RWKVSUB"], os.environ["RWKVCTL"]
sys.path.insert(0, os.environ["RWKVD_PYTHON"])
import rwkvd_client  # noqa: E402

SIG = b"RWKV1"
failures = 0


def check(cond, what):
    global failures
    if cond:
        print("ok:", what)
    else:
        failures += 1
        print("FAIL:", what)


def run(args, stdin=b"", timeout=20):
    p = subprocess.run(args, input=stdin, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


class FakeIngest:
    """ROUTER that keeps the pair's acked like rwkvd and asks policy(seq, first_time) what to
    do: 'ack'; 'drop' (lost: not applied, no reply); 'accept_silently' (applied, reply lost);
    ('error', code) or ('error', code, delay_s): reject, and send CREDIT delay_s later."""

    def __init__(self, policy=None, credit=4, sync_acked=0):
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:*")
        self.endpoint = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.policy = policy or (lambda seq, first: "ack")
        self.credit = credit
        self.acked = sync_acked
        self.paused_at = 0
        self.accepted = []  # (op, seq, payload) in acceptance order
        self.seen = {}  # seq -> times received
        self.stop = False
        self.timers = []
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _reply(self, ident, *frames):
        self.sock.send_multipart([ident, SIG] + [f if isinstance(f, bytes) else str(f).encode() for f in frames])

    def _loop(self):
        while not self.stop:
            now = time.monotonic()
            for t in list(self.timers):
                if t[0] <= now:
                    self.timers.remove(t)
                    t[1]()
            if not self.sock.poll(20):
                continue
            f = self.sock.recv_multipart()
            ident, msg = f[0], f[1:]
            if msg and msg[0] == b"":
                msg = msg[1:]
            op, ch, pr, seq = msg[1].decode(), msg[2], msg[3], int(msg[4])
            payload = msg[5] if len(msg) > 5 else b""
            if op == "SYNC":
                self.paused_at = 0
                self._reply(ident, "CREDIT", ch, pr, self.acked, self.credit)
                continue
            first = seq not in self.seen
            self.seen[seq] = self.seen.get(seq, 0) + 1
            if seq <= self.acked:
                self._reply(ident, "DUP", ch, pr, seq, self.acked, self.credit)
                continue
            if self.paused_at and seq != self.paused_at:
                self._reply(ident, "ERROR", ch, pr, seq, 425, "paused at %d" % self.paused_at)
                continue
            action = self.policy(seq, first)
            if action == "drop":  # lost on the way: neither applied nor answered
                continue
            if isinstance(action, tuple) and action[0] == "error":
                code = action[1]
                if code in (409, 429, 500, 503, 507):
                    self.paused_at = seq
                self._reply(ident, "ERROR", ch, pr, seq, code, "scripted %d" % code)
                if len(action) > 2:  # CREDIT later
                    self.timers.append((time.monotonic() + action[2],
                                        lambda i=ident, c=ch, p=pr: self._reply(i, "CREDIT", c, p, self.acked, self.credit)))
                continue
            self.acked = seq
            self.paused_at = 0
            self.accepted.append((op, seq, payload))
            if action != "accept_silently":  # the reply is lost
                self._reply(ident, "ACK", ch, pr, seq, self.acked, self.credit)

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close(0)


def outage(first_seq, seconds):
    """Policy: from the first sight of first_seq, drop everything for `seconds`."""
    t = {}

    def policy(seq, first):
        if seq == first_seq and "end" not in t:
            t["end"] = time.monotonic() + seconds
        return "drop" if "end" in t and time.monotonic() < t["end"] else "ack"
    return policy


def cat(ep, *extra, stdin=b"", timeout=20):
    return run([RWKVCAT, "-e", ep, "-c", "app/x", "-p", "t1", "--connect-timeout", "5s", "--drain-timeout", "10s"]
               + list(extra), stdin=stdin, timeout=timeout)


def test_rwkvcat():
    lines = b"".join(b"line %d\n" % i for i in range(1, 6))
    tmp = tempfile.mkdtemp()
    state = os.path.join(tmp, "seq")

    f = FakeIngest(credit=2)
    rc, _, err = run([RWKVCAT, "-e", f.endpoint, "-c", "app/x", "-S", state, "--connect-timeout", "5s"], stdin=lines)
    check(rc == 0, "rwkvcat: 5 lines acknowledged, exit 0 (%d %s)" % (rc, err.strip()))
    check([(o, s) for o, s, _ in f.accepted] == [("TEXT", i) for i in range(1, 6)], "rwkvcat: seqs 1..5 in order")
    check([p for _, _, p in f.accepted] == [b"line %d" % i for i in range(1, 6)], "rwkvcat: payloads without newline")
    st = open(state).read()
    check("channel app/x" in st and "acked 5" in st, "rwkvcat: state file records acked 5")
    prod = [l.split(" ", 1)[1] for l in st.splitlines() if l.startswith("producer ")][0]
    f.close()

    # a daemon that forgot the pair (restart): the state file moves the numbering on, and
    # the producer id is the one stored in it
    f = FakeIngest()
    rc, _, err = run([RWKVCAT, "-e", f.endpoint, "-c", "app/x", "-S", state, "--connect-timeout", "5s"],
                     stdin=b"a\r\nb")
    check(rc == 0 and [s for _, s, _ in f.accepted] == [6, 7], "rwkvcat: restart resumes at seq 6 (%r)" % f.accepted)
    check([p for _, _, p in f.accepted] == [b"a", b"b"], "rwkvcat: CRLF stripped, last line without newline sent")
    rc, _, err = run([RWKVCAT, "-e", f.endpoint, "-c", "other", "-S", state], stdin=b"")
    check(rc == 2 and "holds the state of channel app/x" in err, "rwkvcat: state file of another channel refused")
    rc, _, err = run([RWKVCAT, "-e", f.endpoint, "-c", "app/x", "-p", prod + "x", "-S", state], stdin=b"")
    check(rc == 2 and "producer" in err, "rwkvcat: state file of another producer refused")
    f.close()

    # 429 at seq 2, CREDIT 300 ms later: everything accepted once, in order
    f = FakeIngest(policy=lambda seq, first: ("error", 429, 0.3) if seq == 2 and first else "ack", credit=8)
    t0 = time.monotonic()
    rc, _, err = cat(f.endpoint, stdin=lines)
    check(rc == 0 and [s for _, s, _ in f.accepted] == [1, 2, 3, 4, 5], "rwkvcat: 429 then CREDIT, all in order")
    check(time.monotonic() - t0 < 3, "rwkvcat: resumed on CREDIT, not a timeout")
    f.close()

    # 429 without CREDIT: resend after 1 s on its own
    f = FakeIngest(policy=lambda seq, first: ("error", 429) if seq == 3 and first else "ack", credit=8)
    rc, _, err = cat(f.endpoint, stdin=lines)
    check(rc == 0 and [s for _, s, _ in f.accepted] == [1, 2, 3, 4, 5], "rwkvcat: 429 without CREDIT retried")
    f.close()

    # 503 twice: back-off and retry
    f = FakeIngest(policy=lambda seq, first: ("error", 503) if seq == 4 and f.seen[4] <= 2 else "ack", credit=8)
    rc, _, err = cat(f.endpoint, stdin=lines)
    check(rc == 0 and [s for _, s, _ in f.accepted] == [1, 2, 3, 4, 5], "rwkvcat: 503 backed off and retried")
    f.close()

    # the daemon goes deaf for 0.5 s from seq 3 on (messages lost, no replies): resend from
    # seq 3 after --timeout, in order
    f = FakeIngest(policy=outage(3, 0.5), credit=8)
    rc, _, err = cat(f.endpoint, "-t", "300ms", stdin=lines)
    check(rc == 0 and [s for _, s, _ in f.accepted] == [1, 2, 3, 4, 5],
          "rwkvcat: lost seqs 3.. resent in order (%d %r)" % (rc, [s for _, s, _ in f.accepted]))
    check(f.seen.get(3, 0) >= 2 and "resending from seq 3" in err, "rwkvcat: resend reported on stderr")
    f.close()

    # a lost reply (message accepted): the next ACK's acked covers it, no resend needed
    f = FakeIngest(policy=lambda seq, first: "accept_silently" if seq == 2 else "ack", credit=8)
    rc, _, err = cat(f.endpoint, "-t", "300ms", stdin=lines)
    check(rc == 0 and [s for _, s, _ in f.accepted] == [1, 2, 3, 4, 5] and f.seen[2] == 1,
          "rwkvcat: a lost ACK is covered by the next one's acked")
    f.close()

    # non-retryable rejection: reported with file:line, others delivered, exit 1
    f = FakeIngest(policy=lambda seq, first: ("error", 422) if seq == 2 else "ack")
    rc, _, err = cat(f.endpoint, stdin=lines)
    check(rc == 1 and "stdin:2 (seq 2) rejected: 422 invalid value: scripted 422" in err,
          "rwkvcat: 422 reported, exit 1 (%d %s)" % (rc, err.strip()))
    check([s for _, s, _ in f.accepted] == [1, 3, 4, 5], "rwkvcat: the other lines delivered")
    f.close()

    # tokens, task, reset, gen, explicit seq, files
    f = FakeIngest()
    path = os.path.join(tmp, "in.txt")
    open(path, "w").write("1 2,3\n\n65535\n")
    rc, _, err = cat(f.endpoint, "--tokens", "--reset", "--task", "chat", "--gen", '{"max_tokens":4}', "-s", "100",
                     path)
    got = [(o, s, p) for o, s, p in f.accepted]
    check(rc == 0 and [o for o, _, _ in got] == ["RESET", "TASK", "TOKENS", "TOKENS", "GEN"],
          "rwkvcat: RESET, TASK, TOKENS x2 (blank line skipped), GEN (%r)" % got)
    check(got and got[0][1] == 100 and got[2][2] == struct.pack("<3I", 1, 2, 3) and got[1][2] == b"chat"
          and got[4][2] == b'{"max_tokens":4}', "rwkvcat: seq from -s, packed ids, payloads")
    rc, _, err = cat(f.endpoint, "--tokens", stdin=b"1 x\n")
    check(rc == 1 and "stdin:1:3: not a token id list" in err, "rwkvcat: bad token line named")
    rc, _, err = cat(f.endpoint, stdin=b"caf\xe9\n")
    check(rc == 0 and f.accepted[-1][2] == "caf\ufffd".encode() and "replaced by U+FFFD" in err,
          "rwkvcat: invalid UTF-8 replaced")
    rc, _, err = cat(f.endpoint, "--max-bytes", "1024", stdin=b"x" * 3000 + b"\nshort\n")
    check(rc == 1 and "longer than" in err and f.accepted[-1][2] == b"short", "rwkvcat: over-long line skipped")
    rc, _, err = cat(f.endpoint, os.path.join(tmp, "missing"))
    check(rc == 4 and "cannot open" in err, "rwkvcat: missing input file named, exit 4")
    f.close()

    # nobody there
    rc, _, err = run([RWKVCAT, "-e", "tcp://127.0.0.1:1", "-c", "a", "--connect-timeout", "300ms"], stdin=b"x\n")
    check(rc == 3 and "no answer from tcp://127.0.0.1:1" in err, "rwkvcat: no daemon -> exit 3 (%d)" % rc)

    # argument errors
    for args, want in ([[], "missing -c"], [["-c", "bad name"], "not a channel name"],
                       [["-c", "a", "--gen", '{"bogus":1}'], "bogus"], [["-c", "a", "-t", "0"], "--timeout"],
                       [["-c", "a", "-p", "$x"], "not a producer id"], [["-c", "a", "-s", "0"], "--seq"]):
        rc, _, err = run([RWKVCAT] + args)
        check(rc == 2 and want in err, "rwkvcat %s -> exit 2, '%s'" % (" ".join(args), want))


def test_rwkvsub():
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind("tcp://127.0.0.1:*")
    ep = pub.getsockopt(zmq.LAST_ENDPOINT).decode()
    p = subprocess.Popen([RWKVSUB, "-e", ep, "-c", "app/", "-n", "4", "-t", "10s"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    got_sub = pub.poll(5000) and pub.recv() == b"\x01app/"  # XPUB shows the subscription: no race
    check(got_sub, "rwkvsub: subscribed to app/")

    def send(*frames):
        pub.send_multipart([f if isinstance(f, bytes) else str(f).encode() for f in frames])

    send("app/x", SIG, "CLASS", "w", 1, 12, '{"profile":"p","labels":["a","b"],"probs":[0.25,0.75],"top":"b"}')
    send("app/x", b"RWKV2", "CLASS", "w", 1, 12, "{}")  # another version: ignored
    send("app/x", SIG, "NEWKIND", "w", 1, 12, "x")  # a later kind: ignored
    send("app/x", SIG, "TEXT", "w", 2, 12, "0")  # malformed (no piece): reported, skipped
    send("app/x", SIG, "TEXT", "w", 2, 12, 0, "h\u00e9")
    send("app/y", SIG, "END", "w", 2, 12, '{"reason":"stop","n_tokens":1,"text":"h","stop":"\\n","seed":7,"committed":false}')
    send("app/x", SIG, "ERROR", "", 0, 12, 500, "boom")
    try:
        out, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    lines = [json.loads(l) for l in out.decode().splitlines()]
    check(p.returncode == 0 and len(lines) == 4, "rwkvsub: 4 messages then exit 0 (%s)" % p.returncode)
    if len(lines) == 4:
        check(lines[0] == {"channel": "app/x", "kind": "CLASS", "producer": "w", "seq": 1, "tokens_seen": 12,
                           "body": {"profile": "p", "labels": ["a", "b"], "probs": [0.25, 0.75], "top": "b"}},
              "rwkvsub: CLASS line")
        check(lines[1]["kind"] == "TEXT" and lines[1]["index"] == 0 and lines[1]["piece"] == "h\u00e9", "rwkvsub: TEXT")
        check(lines[2]["kind"] == "END" and lines[2]["body"]["seed"] == 7, "rwkvsub: END")
        check(lines[3] == {"channel": "app/x", "kind": "ERROR", "producer": "", "seq": 0, "tokens_seen": 12,
                           "code": 500, "text": "boom"}, "rwkvsub: ERROR")
    check(b"malformed publication" in err, "rwkvsub: malformed message reported on stderr")
    rc, out, err = run([RWKVSUB, "-e", ep, "-n", "2", "-t", "300ms"])
    check(rc == 3 and "timeout: 0 of 2" in err, "rwkvsub: --count not reached -> exit 3")
    rc, out, err = run([RWKVSUB, "-e", ep, "-t", "200ms"])
    check(rc == 0, "rwkvsub: --timeout without --count -> exit 0")
    rc, _, err = run([RWKVSUB, "-k", "nope"])
    check(rc == 2 and "--kind" in err, "rwkvsub: bad --kind -> exit 2")
    pub.close(0)


class FakeControl:
    def __init__(self, answer):
        self.sock = zmq.Context.instance().socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:*")
        self.endpoint = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.answer, self.requests, self.stop = answer, [], False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stop:
            if not self.sock.poll(20):
                continue
            f = self.sock.recv_multipart()
            req = [x.decode() for x in f[3:]]
            self.requests.append(req)
            ans = self.answer(req)
            if ans is not None:
                self.sock.send_multipart(f[:2] + [SIG, str(ans[0]).encode(), ans[1].encode()])

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close(0)


def test_rwkvctl():
    def answer(req):
        if req[0] == "STATUS":
            return 200, '{"daemon":"rwkvd","uptime_s":0.1}'
        if req[0] == "INFO" and req[1] == "app/n":
            return 200, ('{"name":"app/n","model":{"dim":64},"labels":["a","b"],"gen":false,'
                         '"producers":[{"id":"web-1","acked":7},{"id":"p2","acked":12345}]}')
        if req[0] == "INFO":
            return 404, "unknown channel '%s'" % req[1]
        if req[0] == "METRICS":
            return 200, "rwkvd_tokens_total 5\n"
        if req[0] == "SNAPSHOT":
            return 501, "no snapshot store"
        if req[0] == "CHANNELS":
            if req[1] == "none/":
                return 200, '{"channels":[],"more":false}'
            if len(req) < 3 or req[2] == "":
                return 200, '{"channels":[{"name":"a/1","tokens_seen":5},{"name":"a/2"}],"more":true}'
            return 200, '{"channels":[{"name":"a/3","tokens_seen":100}],"more":false}'
        return None  # RELOAD: never answered

    f = FakeControl(answer)
    rc, out, err = run([RWKVCTL, "-e", f.endpoint, "status"])
    check(rc == 0 and out == "daemon:   rwkvd\nuptime_s: 0.1\n", "rwkvctl status: aligned key: value lines, exit 0")
    rc, out, err = run([RWKVCTL, "-e", f.endpoint, "--json", "status"])
    check(rc == 0 and out == '{"daemon":"rwkvd","uptime_s":0.1}\n', "rwkvctl --json: the body as sent")
    rc, out, err = run([RWKVCTL, "-e", f.endpoint, "info", "app/n"])
    check(rc == 0 and out == ("name:      app/n\n"
                              "model.dim: 64\n"
                              "labels:    a, b\n"
                              "gen:       false\n"
                              "producers:\n"
                              "  ID     ACKED\n"
                              "  web-1      7\n"
                              "  p2     12345\n"),
          "rwkvctl info: nested keys dotted, scalar lists joined, object lists as a table (%d %s): %r" % (rc, err, out))
    rc, out, err = run([RWKVCTL, "-e", f.endpoint, "info", "app/x"])
    check(rc == 14 and "404 not found: unknown channel 'app/x'" in err, "rwkvctl info: 404 -> exit 14")
    rc, out, err = run([RWKVCTL, "-e", f.endpoint, "snapshot", "--all"])
    check(rc == 111 and f.requests[-1] == ["SNAPSHOT"], "rwkvctl snapshot --all: 501 -> exit 111")
    rc, out, err = run([RWKVCTL, "-e", f.endpoint, "metrics"])
    check(rc == 0 and out == "rwkvd_tokens_total 5\n", "rwkvctl metrics: text as is")
    rc, out, err = run([RWKVCTL, "-e", f.endpoint, "--json", "channels", "a/"])
    names = [c["name"] for c in json.loads(out)["channels"]] if rc == 0 else []
    check(names == ["a/1", "a/2", "a/3"] and f.requests[-1] == ["CHANNELS", "a/", "a/2"],
          "rwkvctl --json channels: pages followed with 'after', merged")
    rc, out, err = run([RWKVCTL, "-e", f.endpoint, "channels", "a/"])
    check(rc == 0 and out == "NAME  TOKENS_SEEN\na/1             5\na/2             -\na/3           100\n",
          "rwkvctl channels: one table over all pages, numbers right-aligned:\n" + out)
    rc, out, err = run([RWKVCTL, "-e", f.endpoint, "channels", "none/"])
    check(rc == 0 and out == "no channels\n", "rwkvctl channels: an empty list")
    rc, out, err = run([RWKVCTL, "-e", f.endpoint, "-t", "300ms", "reload"])
    check(rc == 3 and "no reply" in err, "rwkvctl: no reply -> exit 3")
    for args in (["bogus"], ["info"], ["status", "x"], ["info", "bad name"], []):
        rc, out, err = run([RWKVCTL, "-e", f.endpoint] + args)
        check(rc == 2, "rwkvctl %s -> exit 2" % " ".join(args))

    # the Python Control class against the same fake
    ctl = rwkvd_client.Control(f.endpoint, timeout=0.3)
    check(ctl.command("STATUS") == (200, {"daemon": "rwkvd", "uptime_s": 0.1}), "python Control: STATUS")
    check(ctl.command("INFO", "x")[0] == 404, "python Control: 404")
    try:
        ctl.command("RELOAD")
        check(False, "python Control: timeout raised")
    except rwkvd_client.Timeout:
        check(True, "python Control: timeout raised")
    check(ctl.command("METRICS") == (200, "rwkvd_tokens_total 5\n"), "python Control: usable after a timeout")
    ctl.close()
    f.close()


def test_python_producer():
    f = FakeIngest(policy=lambda seq, first: ("error", 429, 0.2) if seq == 13 and first else
                   ("error", 422) if seq == 15 else "ack", credit=2, sync_acked=10)
    p = rwkvd_client.Producer(f.endpoint, producer="py", timeout=0.5)
    seqs = [p.send_text("app/x", "l%d" % i) for i in range(3)] + [p.send_tokens("app/x", [1, 2]), p.gen("app/x", max_tokens=3)]
    check(seqs == [11, 12, 13, 14, 15], "python Producer: numbering after SYNC's acked (%r)" % seqs)
    try:
        p.flush(timeout=10)
        check(False, "python Producer: rejection raised")
    except rwkvd_client.RejectedError as e:
        check(e.errors[0][:2] == (15, 422), "python Producer: rejection raised (%r)" % e.errors)
    check(p.unacked == 0, "python Producer: window empty")
    check([s for _, s, _ in f.accepted] == [11, 12, 13, 14] and f.accepted[3][2] == struct.pack("<2I", 1, 2),
          "python Producer: 429 + CREDIT in order, tokens packed (%r)" % [s for _, s, _ in f.accepted])
    p.close()
    f.close()
    # a silent reply: resent after the timeout
    f = FakeIngest(policy=outage(2, 0.4))
    p = rwkvd_client.Producer(f.endpoint, producer="py2", timeout=0.3)
    for i in range(3):
        p.send_text("c", str(i))
    p.flush(timeout=10)
    check([s for _, s, _ in f.accepted] == [1, 2, 3] and f.seen[2] >= 2, "python Producer: resend after an outage")
    p.close()
    f.close()
    pubs = rwkvd_client.decode_publication([b"a", SIG, b"TEXT", b"w", b"3", b"9", b"1", b"hi"])
    check(pubs.kind == "TEXT" and pubs.index == 1 and pubs.piece == "hi" and pubs.seq == 3, "python decode TEXT")
    check(rwkvd_client.decode_publication([b"$sys", SIG, b"TEXT", b"", b"0", b"0", b"0", b"x"]) is None,
          "python decode skips $ topics")


def main():
    for t in (test_rwkvcat, test_rwkvsub, test_rwkvctl, test_python_producer):
        t0 = time.monotonic()
        t()
        print("-- %s: %.1fs" % (t.__name__, time.monotonic() - t0))
    print("%d failure(s)" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
