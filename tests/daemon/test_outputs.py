#!/usr/bin/python3
"""Output sequence numbers, retention and REPLAY (PROTOCOL.md §9.7) on the real rwkvd binary
over real sockets.

Usage: test_outputs.py NAME   (NAME = one of the test_* functions below, without the prefix)
Environment as test_rwkvd.py, plus RWKVSUB (the rwkvsub binary) and RWKVD_CLIENT_DIR (the
folder of rwkvd_client.py) for the client cases. Every receive has a timeout.

  contiguous   every publication of a channel carries an oseq: 1, 2, 3, ... per channel,
               across CLASS, TEXT, END and ERROR; REPLAY returns the same bytes, in order
  retention    outputs.retain_messages / retain_bytes bound what REPLAY returns; asking for
               older output names the lost range and the first retained oseq; 404, 0 after
  nosequence   outputs.sequence: false: the frames of older releases (no oseq), REPLAY 501, and
               the Python Subscriber passes publications through
  hwm          a subscriber that lost publications to the send high-water mark gets them
               back through REPLAY: every oseq exactly once
  durable      retention survives kill -9 (in the channel's snapshot, FORMATS.md §1 version 2)
               and the disk tier (REPLAY reads the snapshot; a promotion brings it back);
               EXPORT images stay version 1, without it
  kill9        kill -9 and restart: outputs re-applied from the input log keep their oseqs
               (byte-equal), and a subscriber that reconnects and replays has every output
               exactly once, with no gap
  standby      a warm standby numbers and retains the same outputs as its primary (the
               snapshots of the full sync carry the retention), so after a takeover REPLAY on
               the new primary returns what the old one published, under the same oseqs
  python       the Python client's Subscriber recovers by itself across a kill -9 restart
  rwkvsub      rwkvsub recovers by itself across a kill -9 restart
"""
import json
import os
import signal
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_rwkvd as T  # noqa: E402  (skips with 77 when zmq/numpy are missing)
from test_rwkvd import SEV_PROFILE, SIG, Daemon, Fail, check, expect_reply, recv, send  # noqa: E402

zmq = T.zmq

NFRAMES = {b"CLASS": 7, b"END": 7, b"TEXT": 8, b"ERROR": 8}


def oseq_of(m):
    check(m[1] == SIG and m[2] in NFRAMES, "publication %r" % m[:3])
    check(len(m) == NFRAMES[m[2]] + 1, "%s publication without its oseq frame: %r" % (m[2], m))
    return int(m[-1])


def replay(d, channel, after):
    """REPLAY: (body, [publications as lists of frames])."""
    s = d.ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(d.ctl_ep)
    s.send_multipart([SIG, b"REPLAY", channel, str(after).encode()])
    r = recv(s, what="REPLAY reply")
    s.close()
    check(r[0] == SIG and r[1] == b"200", "REPLAY %r %d: %r" % (channel, after, r[:3]))
    body = json.loads(r[2])
    pubs = []
    blob = r[3] if len(r) > 3 else b""
    off = 0
    while off < len(blob):
        n, = struct.unpack_from("<I", blob, off)
        off += 4
        frames = []
        for _ in range(n):
            ln, = struct.unpack_from("<I", blob, off)
            frames.append(blob[off + 4:off + 4 + ln])
            off += 4 + ln
        pubs.append(frames)
    check(len(pubs) == body["count"], "REPLAY count %d, %d publications in frame 3" % (body["count"], len(pubs)))
    return body, pubs


def drain(sub, quiet_ms=700):
    """Every publication until none arrives for quiet_ms."""
    got = []
    while sub.poll(quiet_ms):
        got.append(sub.recv_multipart())
    return got


def by_channel(pubs):
    out = {}
    for m in pubs:
        out.setdefault(m[0], []).append(m)
    return out


GEN_PROFILE = SEV_PROFILE + """    gen:
      kind: continue
      trigger: request
      generate: {max_tokens: 8, temperature: 0}
"""


# ---- tests ------------------------------------------------------------------------------

def test_contiguous():
    d = Daemon(profiles=GEN_PROFILE, default_profile="sev")
    try:
        sub = d.sub(b"")
        s = d.dealer()
        seq = 0
        for i in range(6):
            for ch in (b"a/1", b"a/2"):
                seq += 1
                send(s, b"TEXT", ch, b"p", seq, b"event %d" % i)
                expect_reply(s, "ACK", seq)
        seq += 1
        send(s, b"TASK", b"a/2", b"p", seq, b"gen")
        expect_reply(s, "ACK", seq)
        seq += 1
        send(s, b"GEN", b"a/2", b"p", seq, b'{"max_tokens":8,"seed":3}')
        expect_reply(s, "ACK", seq)
        seq += 1
        send(s, b"TASK", b"a/3", b"p", seq, b"gen")
        expect_reply(s, "ACK", seq)
        seq += 1
        send(s, b"GEN", b"a/3", b"p", seq, b'{"max_tokens":8}')  # nothing to continue from: ERROR + END
        expect_reply(s, "ACK", seq)
        pubs = by_channel(drain(sub))
        kinds = set()
        for ch in (b"a/1", b"a/2", b"a/3"):
            got = pubs.get(ch, [])
            seqs = [oseq_of(m) for m in got]
            check(seqs == list(range(1, len(got) + 1)), "%s: oseqs %r" % (ch, seqs))
            kinds |= {m[2] for m in got}
            body, rep = replay(d, ch, 0)
            check(body["last"] == len(got) and body["first"] == 1 and body["lost"] is None, "REPLAY body %r" % body)
            check(rep == got, "%s: REPLAY differs from the live publications" % ch)
            body, rep = replay(d, ch, 1)
            check(body["first"] == 2 and rep == got[1:], "%s: REPLAY after 1: %r" % (ch, body))
            body, rep = replay(d, ch, len(got))
            check(body["count"] == 0 and body["first"] == 0 and not rep, "REPLAY after the last: %r" % body)
        check(kinds == {b"CLASS", b"TEXT", b"END", b"ERROR"}, "kinds seen %r" % kinds)
        print("a/1: %d outputs, a/2: %d outputs, kinds %s" % (len(pubs[b"a/1"]), len(pubs[b"a/2"]),
                                                            sorted(k.decode() for k in kinds)))
    finally:
        d.close()


def test_retention():
    d = Daemon(profiles=SEV_PROFILE, default_profile="sev",
               extra="outputs:\n  retain_messages: 5\n  retain_bytes: 64KiB\n")
    try:
        sub = d.sub(b"")
        s = d.dealer()
        for i in range(1, 13):
            send(s, b"TEXT", b"r", b"p", i, b"event %d" % i)
            expect_reply(s, "ACK", i)
        got = drain(sub)
        check([oseq_of(m) for m in got] == list(range(1, 13)), "oseqs %r" % [oseq_of(m) for m in got])
        body, rep = replay(d, b"r", 0)
        check(body["lost"] == {"from": 1, "to": 7} and body["first"] == 8 and body["count"] == 5 and
              body["last"] == 12, "REPLAY after 0 with 5 retained: %r" % body)
        check(rep == got[7:], "the 5 retained are not the last 5 published")
        body, rep = replay(d, b"r", 9)
        check(body["lost"] is None and body["first"] == 10 and rep == got[9:], "REPLAY after 9: %r" % body)
        body, rep = replay(d, b"r", 40)
        check(body["count"] == 0 and body["last"] == 12, "REPLAY after 40: %r" % body)
        code, text = d.control(b"REPLAY", b"nosuch", b"0")
        check(code == b"404", "REPLAY of an unknown channel: %r %r" % (code, text))
        code, text = d.control(b"REPLAY", b"r", b"x")
        check(code == b"400", "REPLAY with a bad oseq: %r %r" % (code, text))
        # the byte bound: each CLASS is a few hundred bytes; 1 KiB keeps fewer than 5
        d.stop()
        d.write_config(SEV_PROFILE, "outputs:\n  retain_messages: 100\n  retain_bytes: 1KiB\n", "sev")
        for ep in (d.ingest_ep, d.pub_ep, d.ctl_ep):
            os.unlink(ep[6:])
        d.log.close()
        d.start()
        sub = d.sub(b"")
        s = d.dealer()
        for i in range(13, 25):
            send(s, b"TEXT", b"r", b"p", i, b"event %d" % i)
            expect_reply(s, "ACK", i)
        got = drain(sub)
        body, rep = replay(d, b"r", 0)
        size = sum(4 + sum(4 + len(f) for f in m) for m in rep)
        check(0 < body["count"] < 12 and size <= 1024 and rep == got[len(got) - body["count"]:],
              "1 KiB retention: %r (%d bytes)" % (body, size))
        check(body["lost"]["from"] == 1 and body["lost"]["to"] == body["first"] - 1 and body["last"] == oseq_of(got[-1]),
              "lost range %r" % body)
        print("retain 5: lost 1..7, kept 8..12; retain 1 KiB: kept %d of %d (%d bytes)" %
              (body["count"], body["last"], size))
    finally:
        d.close()


class Recovering:
    """The subscriber side of §9.7, written from the spec: per channel the highest oseq
    delivered; a gap asks REPLAY before the publication that showed it; duplicates are
    dropped; a REPLAY whose `last` is below ours is a new numbering."""

    def __init__(self, d):
        self.d = d
        self.last = {}
        self.out = []      # delivered publications, in order
        self.lost = []     # (channel, from, to) that REPLAY no longer had
        self.replays = 0
        self.retry = set()  # channels whose REPLAY said `recovering`

    def _replay(self, ch):
        body, pubs = replay(self.d, ch, self.last.get(ch, 0))
        self.replays += 1
        if body["lost"]:
            self.lost.append((ch, body["lost"]["from"], body["lost"]["to"]))
        if body["recovering"]:
            self.retry.add(ch)
        elif body["last"] < self.last.get(ch, 0):
            self.last[ch] = body["last"]
            return
        for m in pubs:
            self.deliver(m, replaying=True)

    def deliver(self, m, replaying=False):
        ch, o = m[0], oseq_of(m)
        last = self.last.get(ch, 0)
        if o <= last:
            return
        if o > last + 1 and not replaying:
            self._replay(ch)
            if o <= self.last.get(ch, 0):
                return
        self.out.append(m)
        self.last[ch] = o

    def reconnected(self, sub=None):
        """REPLAY every channel seen; again a little later for those still `recovering`,
        taking live publications (from `sub`) meanwhile."""
        todo = list(self.last)
        for _ in range(100):
            self.retry = set()
            for ch in todo:
                self._replay(ch)
            if not self.retry:
                return
            todo = sorted(self.retry)
            for m in drain(sub, 300) if sub is not None else []:
                self.deliver(m)
        raise Fail("channels still recovering after 100 tries: %r" % todo)


def test_hwm():
    d = Daemon(profiles=GEN_PROFILE, default_profile="gen",
               extra="outputs:\n  retain_messages: 100000\n  retain_bytes: 16MiB\n", start=False)
    try:
        with open(d.conf) as f:  # the smallest send high-water mark, in the one endpoints section
            text = f.read()
        with open(d.conf, "w") as f:
            f.write(text.replace("endpoints:\n", "endpoints:\n  publish_hwm: 100\n", 1))
        d.start()
        slow = d.ctx.socket(zmq.SUB)
        slow.setsockopt(zmq.LINGER, 0)
        slow.setsockopt(zmq.RCVHWM, 10)
        slow.setsockopt(zmq.RCVBUF, 4096)
        slow.connect(d.pub_ep)
        slow.setsockopt(zmq.SUBSCRIBE, b"")
        time.sleep(0.3)
        s = d.dealer()
        send(s, b"TEXT", b"h", b"p", 1, b"hello")
        expect_reply(s, "ACK", 1)
        send(s, b"GEN", b"h", b"p", 2, b'{"max_tokens":3000,"seed":1}')
        expect_reply(s, "ACK", 2)
        deadline = time.time() + 60
        while d.control_json(b"INFO", b"h")["generating"] or d.control_json(b"INFO", b"h")["queued_messages"]:
            check(time.time() < deadline, "the generation did not end within 60 s")
            time.sleep(0.05)
        met = d.control(b"METRICS")[1].decode()
        dropped = T.metric(met, "rwkvd_publish_dropped_total")
        check(dropped > 0, "no publication was dropped toward the slow subscriber")
        r = Recovering(d)
        live = drain(slow)
        for m in live:
            r.deliver(m)
        last = replay(d, b"h", 1 << 62)[0]["last"]
        if r.last.get(b"h", 0) < last:  # the END itself may be among the dropped: the tail
            r.reconnected()
        got = [oseq_of(m) for m in r.out]
        check(got == list(range(1, last + 1)), "recovered oseqs: %d of %d, first missing %r" %
              (len(got), last, next((i + 1 for i, x in enumerate(got) if x != i + 1), None)))
        check(r.out[-1][2] == b"END" and json.loads(r.out[-1][6])["n_tokens"] == 3000, "the last is not the END")
        check(not r.lost, "lost ranges %r" % r.lost)
        print("slow subscriber: %d live of %d, %d dropped toward it, %d REPLAYs recovered the rest" %
              (len(live), last, dropped, r.replays))
    finally:
        d.close()


def restart_after_kill(d):
    d.proc.kill()
    d.proc.wait()
    for ep in (d.ingest_ep, d.pub_ep, d.ctl_ep):
        try:
            os.unlink(ep[6:])
        except OSError:
            pass
    d.log.close()
    d.start()


def test_nosequence():
    rc = client_module()
    d = Daemon(profiles=SEV_PROFILE, default_profile="sev", extra="outputs:\n  sequence: false\n")
    sub = rc.Subscriber(d.pub_ep, prefixes=("",), context=d.ctx, control=d.ctl_ep)
    try:
        raw = d.sub(b"")
        s = d.dealer()
        send(s, b"TEXT", b"n", b"p", 1, b"event")
        expect_reply(s, "ACK", 1)
        m = T.next_pub(raw)
        check(m[2] == b"CLASS" and len(m) == 7, "CLASS without an oseq frame: %d frames" % len(m))
        pub = sub.recv(timeout=5)
        check(pub is not None and pub.kind == "CLASS" and pub.oseq is None, "Subscriber: %r" % (pub,))
        code, text = d.control(b"REPLAY", b"n", b"0")
        check(code == b"501" and b"outputs.sequence" in text, "REPLAY: %r %r" % (code, text))
        print("outputs.sequence false: 7-frame CLASS, REPLAY 501 (%s)" % text.decode())
    finally:
        sub.close()
        d.close()


def test_durable():
    d = Daemon(profiles=SEV_PROFILE, default_profile="sev")
    try:
        sub = d.sub(b"")
        s = d.dealer()
        for i in range(1, 11):
            send(s, b"TEXT", b"dur/a", b"p", i, b"event %d" % i)
            expect_reply(s, "ACK", i)
        live = drain(sub)
        check([oseq_of(m) for m in live] == list(range(1, 11)), "oseqs %r" % [oseq_of(m) for m in live])
        d.control_json(b"SNAPSHOT")
        with open(os.path.join(d.dir, "state", "snapshots", "dur%2Fa.snap"), "rb") as f:
            head = f.read(12)
        check(struct.unpack_from("<I", head, 8)[0] == 2, "a snapshot with retained outputs is version 2")
        for i in range(11, 16):  # logged after the snapshot: applied again after the kill
            send(s, b"TEXT", b"dur/a", b"p", i, b"event %d" % i)
            expect_reply(s, "ACK", i)
        live += drain(sub)
        check(len(live) == 15, "%d outputs before the kill" % len(live))
        restart_after_kill(d)
        deadline = time.time() + 20
        while True:
            body, rep = replay(d, b"dur/a", 0)
            if not body["recovering"]:
                break
            check(time.time() < deadline, "still recovering after 20 s")
            time.sleep(0.1)
        check(body["lost"] is None and body["first"] == 1 and rep == live,
              "after kill -9: REPLAY after 0 %r; the retained outputs are not the 15 published" % body)
        # the disk tier pins no memory for them, yet REPLAY still has them
        ev = d.control_json(b"EVICT", b"dur/a")
        check(ev["tier"] == "disk", "EVICT %r" % ev)
        body, rep = replay(d, b"dur/a", 4)
        check(body["lost"] is None and rep == live[4:], "REPLAY of a disk-tier channel: %r" % body)
        s2 = d.ctx.socket(zmq.REQ)
        s2.setsockopt(zmq.LINGER, 0)
        s2.connect(d.ctl_ep)
        s2.send_multipart([SIG, b"EXPORT", b"dur/a"])
        r = recv(s2, what="EXPORT reply")
        s2.close()
        check(r[1] == b"200" and struct.unpack_from("<I", r[3], 8)[0] == 1,
              "EXPORT image: version %r (expected 1, no retained outputs)" % (r[3][8:12] if len(r) > 3 else None))
        sub = d.sub(b"")
        send(s, b"TEXT", b"dur/a", b"p", 16, b"event 16")  # promoted: its retention comes back
        expect_reply(s, "ACK", 16)
        live += drain(sub)
        body, rep = replay(d, b"dur/a", 0)
        check(d.control_json(b"INFO", b"dur/a")["tier"] == "resident", "not promoted")
        check(body["lost"] is None and [oseq_of(m) for m in rep] == list(range(1, 17)) and rep == live,
              "after the promotion: %r" % body)
        print("15 outputs retained across kill -9 (10 from the snapshot, 5 applied again), the disk tier and "
              "a promotion; snapshot version 2, EXPORT image version 1")
    finally:
        d.close()


def test_standby():
    import test_durable as D
    import test_failover as FO
    msgs = D.messages(11, 200)
    pri = Daemon(start=False, **D.KW)
    sby = Daemon(start=False, **D.KW)
    try:
        FO.configure(pri, sby.ctl_ep)
        FO.configure(sby, pri.ctl_ep)
        check(FO.launch(pri), "primary exited at start:\n" + FO.logtext(pri))
        psub = pri.sub()
        p = D.Producer(msgs)
        p.connect(pri)
        p.pump(40)
        pri.control_json(b"SNAPSHOT")  # the full sync carries snapshots with retained outputs
        p.pump(20)
        check(FO.launch(sby, "--standby-of", pri.ctl_ep), "standby exited at start:\n" + FO.logtext(sby))
        for _ in range(6):
            p.pump(10)
        FO.wait_for("the standby to catch up", lambda: FO.repl(sby)["next_lsn"] == FO.repl(pri)["next_lsn"], 10)
        FO.wait_for("the primary to apply everything", lambda: all(
            pri.control_json(b"INFO", ch)["queued_messages"] == 0 for ch in D.CHANNELS), 10)
        live = drain(psub, 1000)

        def key(m):  # the epoch aside (the standby's publications carry its own)
            b = json.loads(m[6])
            b.pop("epoch", None)
            return (m[2], m[3], m[4], m[5], json.dumps(b, sort_keys=True))

        def compare(d, what):
            n = 0
            for ch in D.CHANNELS:
                mine = [key(m) for m in live if m[0] == ch]
                check([oseq_of(m) for m in live if m[0] == ch] == list(range(1, len(mine) + 1)), "primary oseqs")
                body, rep = replay(d, ch, 0)
                check(body["lost"] is None and body["last"] == len(mine) and [key(m) for m in rep] == mine,
                      "%s: %s REPLAY %r differs from what the primary published (%d)" % (what, ch, body, len(mine)))
                n += len(mine)
            return n

        n = compare(sby, "standby")
        pri.proc.kill()
        pri.proc.wait()
        FO.wait_for("the standby to take over", lambda: FO.repl(sby)["role"] == "primary", FO.FAILOVER_MS / 1000 + 5)
        compare(sby, "after the takeover")
        print("standby: the %d outputs of %d channels, same oseqs and results as the primary's, before and "
              "after the takeover" % (n, len(D.CHANNELS)))
    finally:
        pri.close()
        sby.close()


def test_kill9():
    chans = [b"k/%d" % i for i in range(3)]
    d = Daemon(profiles=SEV_PROFILE, default_profile="sev", max_batch=2)
    try:
        sub = d.sub(b"k/")
        r = Recovering(d)
        s = d.dealer()
        seq = 0
        events = {}
        same_total = 0
        for rnd in range(3):
            for i in range(12):
                for ch in chans:
                    seq += 1
                    send(s, b"TEXT", ch, b"p", seq, b"event %d of round %d with some words" % (i, rnd))
                    events[(ch, seq)] = True
            for _ in range(12 * len(chans)):
                expect_reply(s, "ACK")
            if rnd == 0:
                for m in drain(sub, 500):
                    r.deliver(m)
                d.control_json(b"SNAPSHOT")
            # kill -9 right after the ACKs: input logged, partly applied, outputs pending
            before = {ch: r.last.get(ch, 0) for ch in chans}
            while sub.poll(0):
                r.deliver(sub.recv_multipart())
            live_before = {(m[0], oseq_of(m)): m for m in r.out}
            restart_after_kill(d)
            time.sleep(0.5)  # the SUB reconnects; re-applied outputs went out at bind already
            r.reconnected(sub)
            for m in drain(sub, 500):
                r.deliver(m)
            # outputs published before the kill and again after it carry the same number and bytes
            same = 0
            for ch in chans:
                body, pubs = replay(d, ch, 0)
                for m in pubs:
                    k = (ch, oseq_of(m))
                    if k in live_before:
                        check(live_before[k] == m, "%s oseq %d differs after the restart:\n%r\n%r" %
                              (ch, k[1], live_before[k], m))
                        same += 1
            same_total += same
            print("round %d: last before the kill %r, re-published with equal bytes: %d" %
                  (rnd, [before[c] for c in chans], same))
        for ch in chans:
            mine = [m for m in r.out if m[0] == ch]
            got = [oseq_of(m) for m in mine]
            check(got == list(range(1, len(got) + 1)), "%s: oseqs %r" % (ch, got))
            seqs = [int(m[4]) for m in mine]
            want = sorted(q for (c, q) in events if c == ch)
            check(seqs == want, "%s: CLASS for input seqs %r, expected each of %r once" % (ch, seqs, want))
        check(not r.lost, "lost ranges %r" % r.lost)
        check(same_total > 0, "no output was published both before a kill and after its restart")
        print("3 kill -9 restarts: %d outputs on %d channels, each once, %d REPLAYs" %
              (len(r.out), len(chans), r.replays))
    finally:
        d.close()


def client_module():
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.environ.get("RWKVD_CLIENT_DIR", os.path.join(here, "..", "..", "clients", "python")))
    import rwkvd_client
    return rwkvd_client


def wait_applied(d, chans, collect):
    deadline = time.time() + 60  # until every channel applied all of its input
    while any(d.control_json(b"INFO", ch)["queued_messages"] or replay(d, ch, 1 << 62)[0]["recovering"]
              for ch in chans):
        check(time.time() < deadline, "the daemon did not apply the input within 60 s")
        collect(0.2)


def feed_and_kill(d, chans, rounds, per_round, collect):
    """Rounds of events on `chans`, each after a SNAPSHOT and followed at once by a kill -9 and
    a restart: the restart applies the round again from the snapshot and publishes its outputs
    while the subscriber is still reconnecting, so it misses some. `collect(seconds)` is called
    while waiting. Returns {channel: [input seqs]}."""
    s = d.dealer()
    seq = 0
    sent = {ch: [] for ch in chans}
    for rnd in range(rounds):
        if rnd:
            wait_applied(d, chans, collect)
            # and the subscriber back and caught up: retention is in memory, so what it has
            # not fetched before the next kill is gone with it (PROTOCOL.md §9.7)
            collect(1.2)
            d.control_json(b"SNAPSHOT")
        for i in range(per_round):
            for ch in chans:
                seq += 1
                # long events: the daemon is still applying them when the kill comes
                send(s, b"TEXT", ch, b"p", seq, b"event %d of round %d: " % (i, rnd) + b"some words " * 30)
                sent[ch].append(seq)
        for _ in range(per_round * len(chans)):
            expect_reply(s, "ACK")
        collect(0.0)  # kill -9 at once: input logged, most of its outputs not yet published
        s.close(0)
        restart_after_kill(d)
        s = d.dealer()
        collect(0.5)
    s.close(0)
    wait_applied(d, chans, collect)
    collect(2.5)  # the subscriber back (a reconnect may take most of a second) and caught up
    return sent


def check_once(got, sent, what):
    """got: {channel: [(oseq, kind, input seq)]} in delivery order."""
    for ch, want in sent.items():
        rows = got.get(ch.decode(), [])
        oseqs = [r[0] for r in rows]
        check(oseqs == list(range(1, len(rows) + 1)), "%s: %s delivered oseqs %r" % (what, ch, oseqs))
        seqs = [r[2] for r in rows if r[1] == "CLASS"]
        check(seqs == want, "%s: %s CLASS for input seqs %r, expected each of %r once" % (what, ch, seqs, want))


def test_python():
    rc = client_module()
    chans = [b"py/%d" % i for i in range(2)]
    d = Daemon(profiles=SEV_PROFILE, default_profile="sev", max_batch=2)
    # a slow reconnect: the restarted daemon publishes for a while before the Subscriber is back
    sub = rc.Subscriber(d.pub_ep, prefixes=("py/",), context=d.ctx, control=d.ctl_ep,
                        sockopts={zmq.RECONNECT_IVL: 700})
    try:
        time.sleep(0.3)
        got = {}

        def collect(quiet):
            while True:
                pub = sub.recv(timeout=quiet)
                if pub is None:
                    return
                got.setdefault(pub.channel, []).append((pub.oseq, pub.kind, pub.seq))

        sent = feed_and_kill(d, chans, 3, 15, collect)
        try:
            check_once(got, sent, "Python Subscriber")
        except Fail as e:
            raise Fail("%s; lost %r, %d REPLAYs" % (e, sub.lost, sub.replays))
        check(not sub.lost, "lost %r" % sub.lost)
        check(sub.replayed > 0, "the Subscriber got nothing through REPLAY: the test recovered nothing")
        print("Python Subscriber: %d outputs on %d channels across 3 kill -9 restarts, each once; %d REPLAYs "
              "delivered %d of them" % (sum(len(v) for v in got.values()), len(chans), sub.replays, sub.replayed))
    finally:
        sub.close()
        d.close()


def test_rwkvsub():
    chans = [b"cs/%d" % i for i in range(2)]
    d = Daemon(profiles=SEV_PROFILE, default_profile="sev", max_batch=2)
    out = open(os.path.join(d.dir, "rwkvsub.out"), "w+")
    err = open(os.path.join(d.dir, "rwkvsub.err"), "w+")
    proc = subprocess.Popen([os.environ.get("RWKVSUB", "build/clients/rwkvsub"), "-e", d.pub_ep, "-C", d.ctl_ep,
                             "-c", "cs/"], stdout=out, stderr=err)
    try:
        time.sleep(0.5)
        sent = feed_and_kill(d, chans, 3, 15, time.sleep)
        want = sum(len(v) for v in sent.values())
        deadline = time.time() + 20
        while sum(1 for _ in open(out.name)) < want and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # and nothing more (a duplicate would show)
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        out.seek(0)
        got = {}
        for line in out:
            j = json.loads(line)
            got.setdefault(j["channel"], []).append((j["oseq"], j["kind"], j["seq"]))
        err.seek(0)
        errtext = err.read()
        try:
            check_once(got, sent, "rwkvsub")
        except Fail as e:
            raise Fail("%s\nrwkvsub's stderr:\n%s" % (e, errtext))
        check("lost" not in errtext, "rwkvsub reported lost output:\n" + errtext)
        check("replayed" in errtext, "rwkvsub never replayed: the test recovered nothing\n" + errtext)
        print("rwkvsub: %d outputs on %d channels across 3 kill -9 restarts, each once" %
              (sum(len(v) for v in got.values()), len(chans)))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()
        err.close()
        d.close()


if __name__ == "__main__":
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    fn = globals().get("test_" + name)
    if not fn:
        print("unknown test %r" % name)
        sys.exit(2)
    try:
        fn()
    except Fail as e:
        print("FAIL: %s" % e)
        sys.exit(1)
    print("ok")
