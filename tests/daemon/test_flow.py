#!/usr/bin/python3
"""PROTOCOL.md §8 flow control of the real rwkvd binary over real sockets: the producer
credit rule and the reply high-water mark, checked with a producer written from §8.1 alone.

Usage: test_flow.py NAME   (NAME = one of the test_* functions below, without the prefix)
Environment as test_rwkvd.py. Every receive has a timeout; a failure raises and exits 1.

  credit_commit   §8.1: max_queue_tokens 2048, a TEXT, a committing GEN whose tokens
                  outnumber the queue, then 682 TEXTs of 100 octets: a producer that
                  follows §8.1 literally gets no 429, and every message is ACKed
  credit_mixed    §8.1: TEXT, TOKENS, GEN and RESET of mixed sizes (up to the whole queue)
                  into a slow channel, from an empty queue and from a queue another
                  producer has filled: no 429; an idle channel's SYNC gives the whole queue
  clients         §8.1: rwkvcat and the Python client's Producer, into a small queue held up by
                  a committing GEN and a slow engine: no 429, every line accepted in order
  replies_window  §8.3: fsync everysec, 200 channels, 900 messages in flight on one
                  connection that keeps reading: every reply arrives, none undeliverable
"""
import json
import os
import random
import subprocess
import sys
import time
from collections import deque

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_rwkvd as T  # noqa: E402  (skips with 77 when zmq/numpy are missing)
from test_rwkvd import SIG, Daemon, Fail, check, expect_reply, metric, recv, send  # noqa: E402

zmq = T.zmq
np = T.np


class SpecProducer:
    """One producer on one channel, following PROTOCOL.md §8.1 to the letter: SYNC first;
    a message costs TEXT octets + the separator's tokens, TOKENS its ids, CANCEL nothing,
    other ops 1 (capped at the queue size); send while the unanswered costs plus the next
    one fit in the latest credit; when nothing is unanswered and the next does not fit,
    SYNC, and when its CREDIT is still too small wait for an unsolicited CREDIT (SYNC again
    when that one is too small too, or after 1 s without one)."""

    def __init__(self, sock, channel, producer, sep_tokens, max_queue_tokens):
        self.s, self.ch, self.pr = sock, channel, producer
        self.sep, self.maxq = sep_tokens, max_queue_tokens
        self.codes = []  # ERROR codes received
        self.acked = []  # seqs answered ACK
        self.max_outstanding = 0

    def cost(self, op, payload):
        if op == b"TEXT":
            c = len(payload) + self.sep
        elif op == b"TOKENS":
            c = len(payload) // 4
        elif op == b"CANCEL":
            c = 0
        else:
            c = 1
        return min(c, self.maxq)

    def _reply(self, timeout_ms):
        if not self.s.poll(timeout_ms):
            return None
        r = self.s.recv_multipart()
        check(r[0] == SIG and r[2] == self.ch and r[3] == self.pr, "reply for another pair: %r" % r)
        return r

    def run(self, msgs, first_seq=1, timeout=60):
        """Send msgs [(op, payload)] with seqs from first_seq; returns when all are answered."""
        deadline = time.time() + timeout
        credit = None
        out = deque()  # (seq, cost), in send order
        out_cost = 0
        i = 0
        sync_sent = False  # a SYNC waits for its CREDIT
        from_credit = 0.0  # when a SYNC's CREDIT last set the credit, else 0
        while i < len(msgs) or out:
            check(time.time() < deadline, "%d of %d messages sent, %d unanswered, credit %r after %d s" %
                  (i, len(msgs), len(out), credit, timeout))
            if credit is not None:
                while i < len(msgs) and out_cost + self.cost(*msgs[i]) <= credit:
                    op, payload = msgs[i]
                    send(self.s, op, self.ch, self.pr, first_seq + i, payload)
                    out.append((first_seq + i, self.cost(op, payload)))
                    out_cost += out[-1][1]
                    i += 1
                self.max_outstanding = max(self.max_outstanding, len(out))
            if not out and not sync_sent and (credit is None or i < len(msgs)) and \
                    (not from_credit or time.time() - from_credit >= 1.0):
                send(self.s, b"SYNC", self.ch, self.pr, 0)
                sync_sent = True
            r = self._reply(100)
            if r is None:
                continue
            if r[1] == b"CREDIT":
                credit = int(r[5])
                # the answer to our SYNC: wait for the unsolicited one; that one: SYNC again
                from_credit = time.time() if sync_sent else 0.0
                sync_sent = False
                continue
            from_credit = 0.0
            check(out, "a reply with nothing unanswered: %r" % r)
            seq, c = out.popleft()
            out_cost -= c
            check(r[4] == str(seq).encode(), "reply for seq %r, expected %d: %r" % (r[4], seq, r))
            if r[1] == b"ERROR":
                self.codes.append(int(r[5]))
                check(r[5] != b"429", "429 for a producer following §8.1: %r (credit %r, %d unanswered)" %
                      (r, credit, len(out)))
                continue
            check(r[1] in (b"ACK", b"DUP"), "reply %r" % r)
            self.acked.append(seq)
            credit = int(r[6])


def status_limits(d):
    st = d.control_json(b"STATUS")
    check("limits" in st, "STATUS has no limits: %r" % st)
    return st["limits"]


def wait_drained(d, chans, timeout=60):
    deadline = time.time() + timeout
    while True:
        busy = [c for c in chans if d.control_json(b"INFO", c)["queued_messages"] > 0]
        if not busy:
            return
        check(time.time() < deadline, "queues not drained: %r" % busy)
        time.sleep(0.05)


# ---- tests ------------------------------------------------------------------------------

def test_credit_commit():
    """The issue's scenario: the committing GEN blocks the queue, its sampled tokens outnumber
    the queue, and 682 TEXTs of 100 octets follow; §8.1 alone must avoid every 429."""
    d = Daemon(extra="limits:\n  max_queue_tokens: 2048")
    try:
        lim = status_limits(d)
        check(lim["max_queue_tokens"] == 2048 and lim["separator_tokens"] == 1, "STATUS limits %r" % lim)
        s = d.dealer()
        p = SpecProducer(s, b"c", b"p", lim["separator_tokens"], lim["max_queue_tokens"])
        rnd = random.Random(3)
        msgs = [(b"TEXT", b"hello"), (b"GEN", b'{"max_tokens":3000,"commit":true,"seed":1}')]
        msgs += [(b"TEXT", bytes(rnd.randrange(97, 123) for _ in range(100))) for _ in range(682)]
        p.run(msgs, timeout=90)
        check(not p.codes and p.acked == list(range(1, 685)), "errors %r, %d ACKed" % (p.codes, len(p.acked)))
        wait_drained(d, [b"c"], timeout=90)
        info = d.control_json(b"INFO", b"c")
        check(info["tokens_seen"] == 6 + 3000 + 682 * 101, "tokens_seen %r" % info)
        met = d.control(b"METRICS")[1].decode()
        check('result="429"' not in met, "429 counted:\n" + met)
    finally:
        d.close()


def test_credit_mixed():
    """Mixed sizes into a slow channel; then a producer that starts on a queue another one filled."""
    d = Daemon(extra="limits:\n  max_queue_tokens: 512", env={"RWKVD_TEST_STEP_DELAY_MS": "3"})
    try:
        s = d.dealer()
        send(s, b"SYNC", b"idle", b"p", 0)
        r = expect_reply(s, "CREDIT")
        check(r[5] == b"512", "SYNC on an idle channel: the whole queue, got %r" % r)
        lim = status_limits(d)
        rnd = random.Random(11)
        msgs = []
        for k in range(160):
            kind = rnd.random()
            if kind < 0.45:
                msgs.append((b"TEXT", b"x" * rnd.choice([0, 1, 5, 40, 100, 300, 511])))
            elif kind < 0.9:
                n = rnd.choice([1, 3, 64, 200, 512])
                msgs.append((b"TOKENS", np.array([rnd.randrange(1, 256) for _ in range(n)], "<u4").tobytes()))
            elif kind < 0.95:
                msgs.append((b"GEN", b'{"max_tokens":4}'))
            else:
                msgs.append((b"RESET", None))
        p = SpecProducer(s, b"m", b"p", lim["separator_tokens"], lim["max_queue_tokens"])
        p.run(msgs, timeout=120)
        check(not p.codes and len(p.acked) == len(msgs), "errors %r" % p.codes)
        check(p.max_outstanding > 1, "the producer never pipelined")
        # a queue another producer has filled: SYNC gives 0, then CREDIT as it drains
        send(s, b"TOKENS", b"f", b"filler", 1, np.full(512, 65, "<u4").tobytes())
        expect_reply(s, "ACK", 1)
        s2 = d.dealer()
        send(s2, b"SYNC", b"f", b"late", 0)
        r = expect_reply(s2, "CREDIT")
        check(int(r[5]) < 512, "credit of a filled queue %r" % r)
        p2 = SpecProducer(s2, b"f", b"late", lim["separator_tokens"], lim["max_queue_tokens"])
        p2.run([(b"TEXT", b"y" * 200)] * 20, timeout=60)
        check(not p2.codes and len(p2.acked) == 20, "errors %r" % p2.codes)
        met = d.control(b"METRICS")[1].decode()
        check('result="429"' not in met, "429 counted:\n" + met)
    finally:
        d.close()


def test_clients():
    """rwkvcat and rwkvd_client.Producer follow §8.1: no 429 from a 1024-token queue that a
    committing GEN blocks and a slow engine drains."""
    sys.path.insert(0, os.environ.get("RWKVD_PYTHON", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                   "..", "..", "clients", "python")))
    import rwkvd_client
    d = Daemon(extra="limits:\n  max_queue_tokens: 1024", env={"RWKVD_TEST_STEP_DELAY_MS": "2"})
    try:
        s = d.dealer()
        send(s, b"TEXT", b"cat", b"seed", 1, b"hello")
        expect_reply(s, "ACK", 1)
        send(s, b"GEN", b"cat", b"seed", 2, b'{"max_tokens":1500,"commit":true,"seed":1}')
        expect_reply(s, "ACK", 2)
        rnd = random.Random(5)
        lines = [bytes(rnd.randrange(97, 123) for _ in range(rnd.choice([1, 30, 100, 300]))) for _ in range(150)]
        r = subprocess.run([os.environ.get("RWKVCAT", "build/clients/rwkvcat"), "-e", d.ingest_ep, "-c", "cat",
                            "-p", "rwkvcat", "--drain-timeout", "60s"], input=b"\n".join(lines) + b"\n",
                           capture_output=True, timeout=90)
        check(r.returncode == 0, "rwkvcat: %r" % (r,))
        with rwkvd_client.Producer(d.ingest_ep, producer="py", timeout=5.0) as prod:
            for ln in lines:
                prod.send_text("py", ln)
            send(s, b"GEN", b"py", b"seed", 1, b'{"max_tokens":1500,"commit":true,"seed":2}')
            expect_reply(s, "ACK", 1)
            for ln in lines:
                prod.send_text("py", ln)
            prod.flush(timeout=90)
        wait_drained(d, [b"cat", b"py"], timeout=90)
        met = d.control(b"METRICS")[1].decode()
        check('result="429"' not in met and 'result="425"' not in met, "429 or 425 counted:\n" + met)
        for ch, producer, n in ((b"cat", "rwkvcat", 150), (b"py", "py", 300)):
            info = d.control_json(b"INFO", ch)
            acked = {p["id"]: p["acked"] for p in info["producers"]}
            check(producer in acked, "INFO %r" % info)
        check(metric(met, 'rwkvd_ingest_messages_total{op="TEXT",result="ack"}') == 1 + 150 + 300,
              "TEXTs accepted:\n" + met)
    finally:
        d.close()


def pump(d, s, chans, total, window, seqs, timeout=60):
    """Send `total` TEXTs round-robin over chans, at most `window` unanswered, reading all the
    time; returns the reply kinds counted."""
    sent = got = outstanding = 0
    deadline = time.time() + timeout
    kinds = {}
    while got < total:
        check(time.time() < deadline, "%d sent, %d replies after %d s" % (sent, got, timeout))
        while sent < total and outstanding < window:
            c = chans[sent % len(chans)]
            seqs[c] += 1
            send(s, b"TEXT", c, b"p", seqs[c], b"line %d" % sent)
            sent += 1
            outstanding += 1
        while s.poll(0 if sent < total and outstanding < window else 50):
            r = s.recv_multipart()
            kinds[r[1]] = kinds.get(r[1], 0) + 1
            got += 1
            outstanding -= 1
            if outstanding < window // 2:
                break
    return kinds


def test_replies_window():
    """fsync everysec, 200 channels, one connection reading all the time: 900 and then 5,000
    messages unanswered (each within its channel's credit) lose no reply; a connection that
    stops reading loses what is beyond ingest_reply_hwm, counted."""
    d = Daemon(durability="durability:\n  fsync: everysec\n", slots=256)
    try:
        s = d.dealer()
        chans = [b"w/%d" % i for i in range(200)]
        seqs = {c: 0 for c in chans}
        for total, window in ((2700, 900), (15000, 5000)):
            kinds = pump(d, s, chans, total, window, seqs)
            check(kinds == {b"ACK": total}, "window %d: replies %r" % (window, kinds))
            met = d.control(b"METRICS")[1].decode()
            check(metric(met, "rwkvd_ingest_replies_undeliverable_total") == 0,
                  "window %d: undeliverable replies:\n%s" % (window, met))
        check(not s.poll(300), "an extra reply")
        check(d.control_json(b"STATUS")["limits"]["ingest_reply_hwm"] == 10000, "STATUS limits.ingest_reply_hwm")
    finally:
        d.close()
    # a client that stops reading: what is beyond the bound is dropped and counted, nothing more
    d = Daemon(start=False, durability="durability:\n  fsync: no\n")
    with open(d.conf) as f:
        text = f.read()
    with open(d.conf, "w") as f:
        f.write(text.replace("endpoints:\n", "endpoints:\n  ingest_reply_hwm: 100\n"))
    try:
        d.start()
        s = d.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVHWM, 1)
        s.setsockopt(zmq.RCVBUF, 4096)
        s.connect(d.ingest_ep)
        n = 20000
        for seq in range(1, n + 1):
            send(s, b"TEXT", b"r", b"p", seq, b"x")
        deadline = time.time() + 30
        while d.control_json(b"INFO", b"r")["producers"] != [{"id": "p", "acked": n}]:
            check(time.time() < deadline, "not all accepted")
            time.sleep(0.05)
        time.sleep(0.3)
        got = 0
        while s.poll(500):
            s.recv_multipart()
            got += 1
        lost = metric(d.control(b"METRICS")[1].decode(), "rwkvd_ingest_replies_undeliverable_total")
        check(lost > 0 and got + lost == n, "%d replies received, %d counted undeliverable, %d sent" % (got, lost, n))
    finally:
        d.close()


if __name__ == "__main__":
    T.run_named(globals(), "test_flow.py")
