#!/usr/bin/python3
"""Durable channel state on the real rwkvd binary: restart after SIGTERM, kill -9
crash cycles, a corrupt snapshot, an input-log write fault.

Usage: test_durable.py NAME (sigterm_restart | crash | corrupt_snapshot | wal_enospc).
How states are compared: after the input is all applied (INFO queued_messages 0 on every
channel), SIGTERM makes rwkvd snapshot every channel; the snapshot files hold the exported
engine state bit for bit, the held input token, the profile and tokens_seen. A run under test
must give the same bytes as a reference run that got the same input without interruption.
Every receive has a timeout (test_rwkvd.recv)."""
import json
import os
import random
import signal
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_rwkvd as T  # noqa: E402  (skips with 77 when zmq/numpy are missing)
from test_rwkvd import Daemon, Fail, check, recv  # noqa: E402

CHANNELS = [b"c/%d" % i for i in range(4)]


def snap_state(path):
    """(payload bytes, tokens_seen, {meta id: seq}) of a snapshot file (FORMATS.md §1)."""
    with open(path, "rb") as f:
        b = f.read()
    check(b[:8] == b"RWKVSNAP", "%s: not a snapshot" % path)
    header_len, = struct.unpack_from("<I", b, 12)
    n_prod, = struct.unpack_from("<I", b, 52)
    tokens_seen, = struct.unpack_from("<Q", b, 56)
    payload_len, = struct.unpack_from("<Q", b, 80)
    name_len, = struct.unpack_from("<H", b, 88)
    off = 90 + name_len
    meta = {}
    for _ in range(n_prod):
        n, = struct.unpack_from("<H", b, off)
        pid = b[off + 2:off + 2 + n]
        seq, = struct.unpack_from("<Q", b, off + 2 + n)
        off += 10 + n
        if pid.startswith(b"$held") or pid.startswith(b"$profile") or pid.startswith(b"$tso"):
            meta[pid] = seq
    return b[header_len:header_len + payload_len], tokens_seen, meta


def drained_states(d, chans=None):
    """Wait until every channel applied its input, SIGTERM, and read every channel's snapshot."""
    chans = chans or CHANNELS
    # a deadline on progress, not on the whole: a reference run may be handed a million tokens
    # at once, which a loaded machine takes longer than 20 s to feed; a stuck queue still fails
    deadline, least = time.time() + 20, None
    while True:
        infos = {c: d.control_json(b"INFO", c) for c in chans}
        busy = [c for c in chans if infos[c]["queued_messages"] > 0]
        if not busy:
            break
        left = sum(infos[c]["queued_tokens"] + infos[c]["queued_messages"] for c in busy)
        if least is None or left < least:
            deadline, least = time.time() + 20, left
        check(time.time() < deadline, "queues not drained (no progress for 20 s): %r" % busy)
        time.sleep(0.02)
    rc = d.stop(signal.SIGTERM)
    check(rc == 0, "exit status %r:\n%s" % (rc, d.logtext()))
    out = {}
    for c in chans:
        stem = c.decode().replace("/", "%2F")
        out[c] = snap_state(os.path.join(d.dir, "state", "snapshots", stem + ".snap"))
    return out


def messages(seed, n, chans=None):
    """n ingest messages over chans (CHANNELS): (channel, seq, op, payload); seqs rise per channel."""
    chans = chans or CHANNELS
    rng = random.Random(seed)
    seq = {c: 0 for c in chans}
    out = []
    for _ in range(n):
        c = rng.choice(chans)
        seq[c] += 1
        if rng.random() < 0.7:
            text = "".join(rng.choice("abcdefgh ijk\n") for _ in range(rng.randint(1, 40)))
            out.append((c, seq[c], b"TEXT", text.encode()))
        else:
            toks = [rng.randint(0, 255) for _ in range(rng.randint(1, 30))]
            out.append((c, seq[c], b"TOKENS", struct.pack("<%dI" % len(toks), *toks)))
    return out


class Producer:
    """Sends messages in order, remembers the highest ACK/DUP per channel and resends every
    message after it on reconnect (what rwkvcat and the Python client do)."""

    def __init__(self, msgs):
        self.msgs = msgs
        self.acked = {m[0]: 0 for m in msgs}
        self.next = 0

    def connect(self, d):
        self.s = d.dealer()
        self.next = 0  # resend from the first message not acknowledged

    def pending(self):
        return [m for m in self.msgs if m[1] > self.acked[m[0]]]

    def pump(self, k, wait=True, timeout_ms=5000):
        """Send up to k unacknowledged messages; with wait, read their replies."""
        batch = self.pending()[:k]
        for c, seq, op, payload in batch:
            T.send(self.s, op, c, b"p", seq, payload)
        if not wait:
            return len(batch)
        for _ in batch:
            r = recv(self.s, timeout_ms, "an ingest reply")
            check(r[1] in (b"ACK", b"DUP"), "reply %r" % r)
            c, seq = r[2], int(r[4])
            self.acked[c] = max(self.acked[c], seq)
        return len(batch)

    def drain_replies(self, timeout_ms):
        while self.s.poll(timeout_ms):
            r = self.s.recv_multipart()
            if r[1] in (b"ACK", b"DUP"):
                self.acked[r[2]] = max(self.acked[r[2]], int(r[4]))
            timeout_ms = 1


def reference(msgs, chans=None, **kw):
    d = Daemon(**kw)
    try:
        p = Producer(msgs)
        p.connect(d)
        while p.pump(64):
            pass
        return drained_states(d, chans)
    finally:
        d.close()


def compare(got, ref, what, chans=None):
    for c in chans or CHANNELS:
        g, r = got[c], ref[c]
        check(g[1] == r[1], "%s: %s tokens_seen %d, reference %d" % (what, c, g[1], r[1]))
        check(g[2] == r[2], "%s: %s held/profile %r, reference %r" % (what, c, g[2], r[2]))
        check(g[0] == r[0], "%s: %s state differs from the reference (%d bytes)" % (what, c, len(r[0])))


def restart(d, kill=False):
    if kill:
        d.proc.kill()
        d.proc.wait()
    else:
        check(d.stop(signal.SIGTERM) == 0, "exit status on SIGTERM:\n" + d.logtext())
    for ep in (d.ingest_ep, d.pub_ep, d.ctl_ep):
        try:
            os.unlink(ep[6:])
        except OSError:
            pass
    d.log.close()
    t0 = time.time()
    d.start()
    return time.time() - t0


# small max_batch: long messages are applied over several jobs, so SIGTERM and kill -9 land
# with entries partly applied (the snapshot's $partial/$pos)
KW = dict(max_batch=4, slots=16)


def test_sigterm_restart():
    """SIGTERM mid-stream then restart: every channel's state equals the no-restart run."""
    msgs = messages(1, 120)
    ref = reference(msgs, **KW)
    d = Daemon(durability="durability:\n  fsync: everysec\n", **KW)
    try:
        p = Producer(msgs)
        p.connect(d)
        p.pump(60)
        dt = restart(d)  # queues are not drained: the rest comes from the input log
        print("restart after SIGTERM: %.3f s" % dt)
        p.connect(d)
        while p.pump(64):
            pass
        compare(drained_states(d), ref, "after SIGTERM + restart")
    finally:
        d.close()


def test_crash():
    """>= 20 seeded kill -9 cycles at random points; producers resend after the last ACK.
    fsync "no": kill -9 loses nothing the kernel has (only a machine crash would)."""
    seed = int(os.environ.get("RWKVD_CRASH_SEED", "7"))
    rng = random.Random(seed)
    msgs = messages(seed, 400)
    ref = reference(msgs, **KW)
    d = Daemon(extra="", **KW)  # fsync: no (the harness default)
    try:
        p = Producer(msgs)
        p.connect(d)
        times = []
        for cycle in range(20):
            p.pump(rng.randint(1, 20))
            p.pump(rng.randint(1, 20), wait=False)  # some in flight when the kill comes
            time.sleep(rng.random() * 0.03)
            if rng.random() < 0.3:
                d.control(b"SNAPSHOT")
            times.append(restart(d, kill=True))
            p.connect(d)
        while p.pump(64):
            pass
        print("seed %d: 20 kill -9 cycles, restart (recovery + bind) median %.3f s, max %.3f s" %
              (seed, sorted(times)[10], max(times)))
        compare(drained_states(d), ref, "after 20 kill -9 cycles (seed %d)" % seed)
    finally:
        d.close()


def test_corrupt_snapshot():
    """A flipped byte in the newest snapshot: the .prev generation + the log, with a log line."""
    msgs = messages(3, 80)
    ref = reference(msgs, **KW)
    d = Daemon(**KW)
    try:
        p = Producer(msgs)
        p.connect(d)
        p.pump(30)
        d.control_json(b"SNAPSHOT")
        p.pump(30)
        check(d.stop(signal.SIGTERM) == 0, "SIGTERM")
        snap = os.path.join(d.dir, "state", "snapshots", "c%2F0.snap")
        with open(snap, "r+b") as f:
            f.seek(200)
            byte = f.read(1)
            f.seek(200)
            f.write(bytes([byte[0] ^ 0x40]))
        d.log.close()
        for ep in (d.ingest_ep, d.pub_ep, d.ctl_ep):
            os.unlink(ep[6:])
        d.start()
        log = d.logtext()
        check("c%2F0.snap" in log and "crc" in log and "previous generation" in log,
              "no log line naming the corrupt file and the fallback:\n" + log)
        p.connect(d)
        while p.pump(64):
            pass
        compare(drained_states(d), ref, "after a corrupt snapshot")
    finally:
        d.close()


def test_wal_enospc():
    """RWKVD_FAULT=wal.write:ENOSPC: ingest answers ERROR 503 (no ACK), rwkvd keeps serving."""
    d = Daemon(env={"RWKVD_FAULT": "wal.write:ENOSPC@2"})
    try:
        s = d.dealer()
        T.send(s, b"TEXT", b"c/0", b"p", 1, b"hello")
        r = recv(s, what="a reply under ENOSPC")
        check(r[1] == b"ERROR" and r[5] == b"503", "expected ERROR 503, got %r" % r)
        T.send(s, b"TEXT", b"c/0", b"p", 1, b"hello")
        r = recv(s, what="a second reply under ENOSPC")
        check(r[1] == b"ERROR", "expected ERROR again, got %r" % r)
        check(d.control(b"STATUS")[0] == b"200", "STATUS still answers")
        check("No space left" in d.logtext(), "the log names the error:\n" + d.logtext())
    finally:
        d.close()


def info(d, c):
    return d.control_json(b"INFO", c)


def metrics(d):
    """The tier gauges and counters of METRICS: {'name{labels}': int}."""
    code, body = d.control(b"METRICS")
    check(code == b"200", "METRICS %r" % code)
    out = {}
    for line in body.decode().splitlines():
        if line.startswith("rwkvd_channels{") or line.startswith("rwkvd_tier_"):
            k, v = line.rsplit(" ", 1)
            out[k] = int(v)
    return out


def tier_counts(m):
    n = {t: m['rwkvd_channels{tier="%s"}' % t] for t in ("resident", "host", "disk")}
    dem = {(a, b): m['rwkvd_tier_demotions_total{from="%s",to="%s"}' % (a, b)]
           for a, b in (("resident", "host"), ("resident", "disk"), ("host", "disk"))}
    prom = {t: m['rwkvd_tier_promotions_total{from="%s"}' % t] for t in ("host", "disk")}
    return n, dem, prom


def check_tier_metrics(m, state_bytes, n_channels, disk0=None):
    """Gauges add up to the channels; bytes are counts times one state; the counters explain
    the host (and, given the channels on disk at start, the disk) population."""
    n, dem, prom = tier_counts(m)
    check(sum(n.values()) == n_channels, "tiers %r do not add up to %d channels" % (n, n_channels))
    for t, k in n.items():
        got = m['rwkvd_tier_bytes{tier="%s"}' % t]
        check(got == k * state_bytes, "rwkvd_tier_bytes{%s} %d for %d states of %d bytes" % (t, got, k, state_bytes))
    host = dem[("resident", "host")] - prom["host"] - dem[("host", "disk")]
    check(n["host"] == host, "host tier %d, counters say %d: %r %r" % (n["host"], host, dem, prom))
    if disk0 is not None:
        disk = disk0 + dem[("resident", "disk")] + dem[("host", "disk")] - prom["disk"]
        check(n["disk"] == disk, "disk tier %d, counters say %d: %r %r" % (n["disk"], disk, dem, prom))


TIER_CHANNELS = [b"t/%d" % i for i in range(12)]


def tier_tail(msgs):
    """Messages after msgs for t/0..t/4 then t/0 again, each applied before the next: with 4
    resident channels t/4 demotes t/0 (least recently active) to host memory and t/0's next
    message promotes it from there, whatever the timing of the main phase."""
    seq = {}
    for c, sq, _, _ in msgs:
        seq[c] = max(seq.get(c, 0), sq)
    out = []
    for i, c in enumerate(TIER_CHANNELS[:5] + TIER_CHANNELS[:1]):
        seq[c] += 1
        toks = [(7 * i + k) % 256 for k in range(5)]
        out.append((c, seq[c], b"TOKENS", struct.pack("<5I", *toks)))
    return out


def tiers_run(msgs, tail, state_bytes, restart_kind):
    """Feed msgs over 12 channels with resident_channels 4 (of 14 channel slots), host memory
    for 3 states and idle_ttl 500ms, pausing so idle channels expire to disk; restart_kind
    ("kill" or "term") restarts once half-way; then the tail (tier_tail) one message at a
    time. Returns (final states, tiers seen, summed counters)."""
    conf = "residency:\n  resident_channels: 4\n  idle_ttl: 500ms\n  host_max_bytes: %d\n" % (3 * state_bytes + 100)
    d = Daemon(extra=conf, max_batch=4, slots=16)
    try:
        p = Producer(msgs)
        p.connect(d)
        seen = set()
        total_dem, total_prom = {}, {}
        disk0 = 0
        restarted = False
        rounds = 0

        def sample():
            for ch in d.control_json(b"CHANNELS", b"t/")["channels"]:
                seen.add(ch["tier"])
            m = metrics(d)
            created = sum(1 for c in TIER_CHANNELS if p.acked.get(c, 0) > 0)
            check_tier_metrics(m, state_bytes, created, disk0)
            return m

        def add_counters(m):
            _, dem, prom = tier_counts(m)
            for k, v in dem.items():
                total_dem[k] = total_dem.get(k, 0) + v
            for k, v in prom.items():
                total_prom[k] = total_prom.get(k, 0) + v

        while p.pump(6):
            rounds += 1
            if rounds % 4:
                continue
            # everything applied: the bound holds once the channels are idle
            deadline = time.time() + 10
            while True:
                st = d.control_json(b"STATUS")
                if st["queued"]["messages"] == 0 and st["channels"]["resident"] <= 4:
                    break
                check(time.time() < deadline, "resident channels stay above 4: %r" % st)
                time.sleep(0.02)
            sample()  # just demoted: some in host memory
            time.sleep(0.6)  # idle_ttl passes for every host-tier channel
            sample()
            if restart_kind and not restarted and len(p.pending()) < len(msgs) // 2:
                add_counters(metrics(d))
                restart(d, kill=restart_kind == "kill")
                restarted = True
                # recovery puts channels beyond resident_channels on disk; nothing in host
                m = metrics(d)
                n, dem, prom = tier_counts(m)
                check(n["host"] == 0 or dem[("resident", "host")] > 0, "host tier after restart %r" % m)
                disk0 = n["disk"] + prom["disk"] - dem[("resident", "disk")] - dem[("host", "disk")]
                check(disk0 > 0, "recovery left no channel on disk: %r" % m)
                p.connect(d)
        prom_host = tier_counts(metrics(d))[2]["host"]
        for i, (c, seq, op, payload) in enumerate(tail):
            T.send(p.s, op, c, b"p", seq, payload)
            r = recv(p.s, what="ACK")
            check(r[1] == b"ACK", "tail %s: %r" % (c, r))
            deadline = time.time() + 10
            while info(d, c)["queued_messages"] or info(d, c)["tier"] != "resident":
                check(time.time() < deadline, "tail %s not applied: %r" % (c, info(d, c)))
                time.sleep(0.01)
            if i == 4:
                check(info(d, tail[0][0])["tier"] == "host", "tail: %s not demoted to host memory: %r" %
                      (tail[0][0], info(d, tail[0][0])))
        check(tier_counts(metrics(d))[2]["host"] == prom_host + 1, "tail: no promotion from host memory")
        m = sample()
        add_counters(m)
        return drained_states(d, TIER_CHANNELS), seen, total_dem, total_prom
    finally:
        d.close()


def test_tiers():
    """The tier test: 12 channels, resident_channels 4, host memory for 3 states,
    idle_ttl 500ms, so channels cycle resident -> host -> disk -> resident; every channel's
    final state equals the run without tiering bit for bit, with a kill -9 and a SIGTERM
    restart half-way; the tier gauges and counters stay consistent."""
    msgs = messages(11, 240, TIER_CHANNELS)
    tail = tier_tail(msgs)
    ref = reference(msgs + tail, TIER_CHANNELS, max_batch=4, slots=16)
    state_bytes = len(next(iter(ref.values()))[0])
    for kind in (None, "kill", "term"):
        got, seen, dem, prom = tiers_run(msgs, tail, state_bytes, kind)
        what = "tiered run (restart: %s)" % kind
        check(seen >= {"resident", "host", "disk"}, "%s: tiers seen %r" % (what, seen))
        check(dem[("resident", "host")] > 0 and dem[("host", "disk")] > 0 and prom["host"] > 0 and prom["disk"] > 0,
              "%s: no full cycle: demotions %r promotions %r" % (what, dem, prom))
        print("%s: demotions %r, promotions %r" % (what, dem, prom))
        compare(got, ref, what, TIER_CHANNELS)


def test_evict():
    """EVICT mid-stream (channels with and without queued input, again and again): later
    input restores them from their snapshots, and the final states equal the run without
    eviction bit for bit. An evicted channel's tier is "disk" until its next input."""
    msgs = messages(5, 160)
    ref = reference(msgs, **KW)
    d = Daemon(**KW)
    try:
        p = Producer(msgs)
        p.connect(d)
        rng = random.Random(5)
        n_evicts = 0
        while p.pump(8):
            # no wait for the queues: some are evicted with input still queued (partly applied)
            for c in rng.sample(CHANNELS, 2):
                r = d.control_json(b"EVICT", c)
                check(r == {"name": c.decode(), "tier": "disk"}, "EVICT %r" % r)
                n_evicts += 1
            if n_evicts == 20:  # a quiet channel: its tier stays "disk" while nothing comes
                deadline = time.time() + 20
                while any(info(d, c)["queued_messages"] for c in CHANNELS):
                    check(time.time() < deadline, "queues not drained")
                    time.sleep(0.02)
                d.control_json(b"EVICT", CHANNELS[0])
                before = info(d, CHANNELS[0])
                check(before["tier"] == "disk", "INFO after EVICT %r" % before)
                time.sleep(0.1)
                check(info(d, CHANNELS[0])["tier"] == "disk", "an idle evicted channel stays on disk")
        print("%d EVICTs mid-stream" % n_evicts)
        d.control_json(b"EVICT", CHANNELS[1])  # evicted at shutdown: its snapshot is the state
        compare(drained_states(d), ref, "with EVICTs")
    finally:
        d.close()


def test_evict_slots():
    """state_slots bounds resident channels: with every slot taken and no channel that can
    move out (host tier off, no snapshot store... here: nothing idle to demote is simulated by
    residency.host_max_bytes 0 and EVICTed channels only) a new channel is turned away (507);
    EVICT frees a slot it can take; an evicted channel's next input needs a slot (507
    without one) and is restored into it. Without durability EVICT moves to host memory,
    and is 409 when the host tier has no room."""
    # 2 scratch slots + 3 channel slots; no durability, no host tier: nothing can move out
    d = Daemon(max_batch=4, slots=5, durability="durability:\n  enabled: false\n",
               extra="residency:\n  host_max_bytes: 0\n")
    try:
        s = d.dealer()
        for i, c in enumerate([b"s/0", b"s/1", b"s/2"]):
            T.send(s, b"TEXT", c, b"p", 1, b"hello %d" % i)
            check(recv(s, what="ACK")[1] == b"ACK", "ACK")
        T.send(s, b"TEXT", b"s/3", b"p", 1, b"new")
        r = recv(s, what="507")
        check(r[1] == b"ERROR" and r[5] == b"507" and b"no idle channel" in r[6], "no slot: expected 507, got %r" % r)
        code, body = d.control(b"EVICT", b"s/0")
        check(code == b"409" and b"host_max_bytes" in body, "EVICT without a host tier: %r %r" % (code, body))
    finally:
        d.close()
    d = Daemon(max_batch=4, slots=5, extra="residency:\n  host_max_bytes: 0\n")
    try:
        s = d.dealer()
        for i, c in enumerate([b"s/0", b"s/1", b"s/2"]):
            T.send(s, b"TEXT", c, b"p", 1, b"hello %d" % i)
            r = recv(s, what="ACK")
            check(r[1] == b"ACK", "reply %r" % r)
        # applied first: EVICT of a channel with queued input frees its slot, but its input
        # takes one back at once (the restore comes before its next job)
        deadline = time.time() + 10
        while d.control_json(b"STATUS")["queued"]["messages"]:
            check(time.time() < deadline, "not drained")
            time.sleep(0.02)
        check(d.control_json(b"EVICT", b"s/0")["tier"] == "disk", "EVICT s/0")
        st = d.control_json(b"STATUS")["slots"]
        check(st["used"] == st["total"] - 1, "EVICT freed a slot: %r" % st)
        T.send(s, b"TEXT", b"s/3", b"p", 1, b"new")
        r = recv(s, what="ACK for the new channel")
        check(r[1] == b"ACK", "the freed slot takes a new channel: %r" % r)
        # every slot taken again: the evicted channel's input demotes the least recently
        # active idle channel (s/1; host tier off: to disk) and takes its slot
        T.send(s, b"TEXT", b"s/0", b"p", 2, b" more")
        r = recv(s, what="ACK for the restored channel")
        check(r[1] == b"ACK", "restore into the freed slot: %r" % r)
        deadline = time.time() + 10
        while True:
            i0 = info(d, b"s/0")
            if i0["tier"] == "resident" and i0["queued_messages"] == 0:
                break
            check(time.time() < deadline, "s/0 not restored: %r" % i0)
            time.sleep(0.02)
        check(i0["tokens_seen"] == len(b"hello 0\n") + len(b" more\n"), "tokens_seen across the restore %r" % i0)
        check(info(d, b"s/1")["tier"] == "disk", "s/1 demoted to disk for s/0: %r" % info(d, b"s/1"))
        m = metrics(d)
        check(m['rwkvd_tier_promotions_total{from="disk"}'] == 1 and
              m['rwkvd_tier_demotions_total{from="resident",to="disk"}'] == 2, "tier counters %r" % m)
    finally:
        d.close()
    d = Daemon(durability="durability:\n  enabled: false\n")
    try:
        s = d.dealer()
        T.send(s, b"TEXT", b"x", b"p", 1, b"hi")
        check(recv(s, what="ACK")[1] == b"ACK", "ACK")
        deadline = time.time() + 10
        while info(d, b"x")["queued_messages"]:
            check(time.time() < deadline, "not drained")
            time.sleep(0.02)
        r = d.control_json(b"EVICT", b"x")
        check(r["tier"] == "host", "EVICT without durability goes to host memory: %r" % r)
        T.send(s, b"TEXT", b"x", b"p", 2, b" there")
        check(recv(s, what="ACK")[1] == b"ACK", "ACK")
        deadline = time.time() + 10
        while info(d, b"x")["tier"] != "resident" or info(d, b"x")["queued_messages"]:
            check(time.time() < deadline, "not promoted: %r" % info(d, b"x"))
            time.sleep(0.02)
        check(info(d, b"x")["tokens_seen"] == len(b"hi\n there\n"), "tokens_seen %r" % info(d, b"x"))
    finally:
        d.close()


def evict_restart_run(restart_kind):
    """The evict_restart scenario on a daemon with 2 channel slots (state_slots 4: 2 are
    scratch); restart_kind None, "term" or "kill" restarts between the two phases. Returns
    (INFO tokens_seen before the restart, after it, final states)."""
    d = Daemon(max_batch=4, slots=4)
    try:
        s = d.dealer()
        seq = {c: 0 for c in CHANNELS}

        def drained(c):
            deadline = time.time() + 20
            while info(d, c)["queued_messages"] > 0:
                check(time.time() < deadline, "%s not drained: %r\n%s" % (c, info(d, c), d.logtext()))
                time.sleep(0.02)

        def feed(c, text, evict_others=True):
            if evict_others:  # the only way to more channels than slots
                for o in CHANNELS:
                    if o != c and seq[o]:
                        check(d.control_json(b"EVICT", o)["tier"] == "disk", "EVICT %s" % o)
            seq[c] += 1
            T.send(s, b"TEXT", c, b"p", seq[c], text)
            r = recv(s, what="ACK")
            check(r[1] == b"ACK", "%s: %r\n%s" % (c, r, d.logtext()))
            drained(c)

        for i, c in enumerate(CHANNELS):
            feed(c, b"hello %d" % i)
        # c/2 and c/3 take the 2 slots, their input log past their snapshot; recovery (names in
        # order) gives the slots to c/0 and c/1 first, so after kill -9 it must hand them over
        for c in CHANNELS[2:]:
            feed(c, b" again", evict_others=c == CHANNELS[2])
        before = {c: info(d, c)["tokens_seen"] for c in CHANNELS}
        if restart_kind:
            restart(d, kill=restart_kind == "kill")
            s = d.dealer()
            for c in CHANNELS:  # any input-log records are re-applied (a slot is taken for them)
                drained(c)
        after = {c: info(d, c)["tokens_seen"] for c in CHANNELS}
        if restart_kind:
            st = d.control_json(b"STATUS")["channels"]
            check(st["total"] == 4 and st["disk"] >= 2, "after restart: %r" % st)
        for i, c in enumerate(CHANNELS):
            feed(c, b" later %d" % i)
        return before, after, drained_states(d)
    finally:
        d.close()


def test_evict_restart():
    """More channels than state slots (through EVICT) survive a restart: recovery leaves the
    ones without a slot on disk (evicted), records past a snapshot are re-applied, every
    channel answers INFO with its tokens_seen, and later input gives the no-restart states."""
    _, _, ref = evict_restart_run(None)
    for kind in ("term", "kill"):
        before, after, got = evict_restart_run(kind)
        check(after == before, "%s: tokens_seen %r after the restart, %r before" % (kind, after, before))
        compare(got, ref, "evict + restart (%s)" % kind)


def crc32c(b):
    """CRC-32C (Castagnoli), as FORMATS.md specifies, to forge images whose crc is valid."""
    table = crc32c.table
    if table is None:
        table = crc32c.table = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            table.append(c)
    c = 0xFFFFFFFF
    for x in b:
        c = table[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


crc32c.table = None


def reseal(img):
    """The image with its trailing crc recomputed."""
    return img[:-4] + struct.pack("<I", crc32c(img[:-4]))


def control_raw(d, *frames):
    """A control request whose reply may carry a blob frame: (code, body, blob or None)."""
    s = d.ctx.socket(T.zmq.REQ)
    s.setsockopt(T.zmq.LINGER, 0)
    s.connect(d.ctl_ep)
    s.send_multipart([T.SIG] + list(frames))
    r = recv(s, what="control reply to %r" % (frames[:1],))
    s.close()
    check(r[0] == T.SIG and len(r) in (3, 4), "control reply frames %r" % r[:3])
    return r[1], r[2], r[3] if len(r) == 4 else None


def export(d, c):
    code, body, blob = control_raw(d, b"EXPORT", c)
    check(code == b"200" and blob is not None, "EXPORT %s: %r %r" % (c, code, body))
    j = T.json.loads(body)
    check(j["name"] == c.decode() and j["bytes"] == len(blob) and blob[:8] == b"RWKVSNAP", "EXPORT reply %r" % j)
    return blob


def feed(d, pairs, msgs):
    """Send msgs ((seq, op, payload), producer "q") to every channel of pairs; wait for the ACKs
    and for the queues to drain."""
    s = d.dealer()
    for c in pairs:
        for seq, op, payload in msgs:
            T.send(s, op, c, b"q", seq, payload)
            r = recv(s, what="ACK")
            check(r[1] == b"ACK", "%s: %r" % (c, r))
    s.close()
    deadline = time.time() + 20
    while any(info(d, c)["queued_messages"] for c in pairs):
        check(time.time() < deadline, "queues not drained")
        time.sleep(0.02)


def test_portable():
    """EXPORT / IMPORT / FORK over the control socket: an image imported under a new name, a
    fork, and an image migrated into a second daemon each end, fed the same further input, with
    states equal to their source bit for bit; imports and forks survive kill -9 (durable at
    once); corrupt, truncated, unknown-version and foreign-model images are refused with
    400/422 and change nothing; rwkvctl export/import round-trips through a file."""
    msgs = messages(21, 80)
    rng = random.Random(21)
    later = []
    for seq in range(1, 9):
        toks = [rng.randint(0, 255) for _ in range(rng.randint(1, 20))]
        later.append((seq, b"TOKENS", struct.pack("<%dI" % len(toks), *toks)))
    a = Daemon(**KW)
    b = Daemon(**KW)
    try:
        p = Producer(msgs)
        p.connect(a)
        while p.pump(64):
            pass
        deadline = time.time() + 20
        while any(info(a, c)["queued_messages"] for c in CHANNELS):
            check(time.time() < deadline, "queues not drained")
            time.sleep(0.02)
        img0 = export(a, b"c/0")
        check(d_tier(a, b"c/0") == "resident", "c/0 resident")
        # any tier: EVICT c/3 to disk, the image is its snapshot's state
        img3_before = export(a, b"c/3")
        a.control_json(b"EVICT", b"c/3")
        check(d_tier(a, b"c/3") == "disk" and snap_payload(export(a, b"c/3")) == snap_payload(img3_before),
              "EXPORT of a disk-tier channel gives its state")
        r = a.control_json(b"IMPORT", b"x/0", img0)
        check(r["name"] == "x/0" and r["tier"] in ("host", "disk") and not r["replaced"] and
              r["tokens_seen"] == info(a, b"c/0")["tokens_seen"], "IMPORT reply %r" % r)
        r = a.control_json(b"FORK", b"c/1", b"f/1")
        check(r["name"] == "f/1" and r["from"] == "c/1" and r["tokens_seen"] == info(a, b"c/1")["tokens_seen"],
              "FORK reply %r" % r)
        code, body = a.control(b"FORK", b"c/1", b"f/1")
        check(code == b"409" and b"exists" in body, "FORK onto an existing channel: %r %r" % (code, body))
        code, body = a.control(b"FORK", b"nope", b"f/2")
        check(code == b"404", "FORK of an unknown channel: %r" % code)
        # bad images: refused with the right code, nothing created or changed
        before = info(a, b"x/0")
        bad = [("truncated", img0[:len(img0) // 2], b"400"),
               ("flipped", img0[:200] + bytes([img0[200] ^ 1]) + img0[201:], b"400"),
               ("version 9", reseal(img0[:8] + struct.pack("<I", 9) + img0[12:]), b"422"),
               ("other model", reseal(img0[:16] + struct.pack("<Q", struct.unpack_from("<Q", img0, 16)[0] ^ 1) +
                                      img0[24:]), b"422"),
               ("garbage", b"not a snapshot at all", b"400")]
        for what, img, want in bad:
            for target in (b"y/new", b"x/0"):
                code, body = a.control(b"IMPORT", target, img)
                check(code == want, "%s image into %s: %r %r (want %r)" % (what, target, code, body, want))
                print("%s: %s %s" % (what, code.decode(), body.decode()))
        check(a.control(b"INFO", b"y/new")[0] == b"404", "a refused import created nothing")
        check(info(a, b"x/0") == before, "a refused import changed nothing: %r" % info(a, b"x/0"))
        check("fingerprint" in a.control(b"IMPORT", b"y/new", bad[3][1])[1].decode(), "names the fingerprint")
        # durable at once: kill -9 and the imported and forked channels are back
        restart(a, kill=True)
        deadline = time.time() + 20  # the input log's records are applied again first
        while any(info(a, c)["queued_messages"] for c in CHANNELS):
            check(time.time() < deadline, "queues not drained after kill -9")
            time.sleep(0.02)
        for src, dst in ((b"c/0", b"x/0"), (b"c/1", b"f/1")):
            check(info(a, dst)["tokens_seen"] == info(a, src)["tokens_seen"], "%s after kill -9: %r" % (dst, info(a, dst)))
        # migration: c/2's image into a second daemon, under the same name: its producers come along
        img2 = export(a, b"c/2")
        r = b.control_json(b"IMPORT", b"c/2", img2)
        check(r["tokens_seen"] == info(a, b"c/2")["tokens_seen"], "migration %r" % r)
        acked = {x["id"]: x["acked"] for x in info(b, b"c/2")["producers"]}
        check(acked.get("p") == p.acked[b"c/2"], "producer seqs migrate: %r vs %d" % (acked, p.acked[b"c/2"]))
        # IMPORT over an existing channel replaces it; input it had logged is never applied to
        # the new state, not even by recovery after kill -9
        zs = a.dealer()
        T.send(zs, b"TEXT", b"c/3", b"z", 1, b"logged before the import")
        check(recv(zs, what="ACK")[1] == b"ACK", "c/3 ACK")
        zs.close()
        deadline = time.time() + 20
        while info(a, b"c/3")["queued_messages"] or info(a, b"c/3")["tier"] != "resident":
            check(time.time() < deadline, "c/3 not applied")
            time.sleep(0.02)
        r = a.control_json(b"IMPORT", b"c/3", img0)
        check(r["replaced"] and r["tokens_seen"] == info(a, b"c/0")["tokens_seen"], "replace %r" % r)
        restart(a, kill=True)
        deadline = time.time() + 20
        while any(info(a, c)["queued_messages"] for c in CHANNELS):
            check(time.time() < deadline, "queues not drained after kill -9")
            time.sleep(0.02)
        check(info(a, b"c/3")["tokens_seen"] == info(a, b"c/0")["tokens_seen"],
              "replaced channel after kill -9: %r" % info(a, b"c/3"))
        check(snap_payload(export(a, b"c/3")) == snap_payload(export(a, b"c/0")), "replaced state after kill -9")
        # rwkvctl export/import through a file
        path = os.path.join(a.dir, "c1.img")
        rc = T.subprocess.run([RWKVCTL, "-e", a.ctl_ep, "export", "c/1", path], capture_output=True)
        check(rc.returncode == 0, "rwkvctl export: %r" % (rc,))
        with open(path, "rb") as f:
            check(snap_payload(f.read()) == snap_payload(export(a, b"c/1")), "rwkvctl export wrote the image")
        rc = T.subprocess.run([RWKVCTL, "-e", a.ctl_ep, "import", "r/1", path], capture_output=True)
        check(rc.returncode == 0 and b"r/1" in rc.stdout, "rwkvctl import: %r" % (rc,))
        with open(path, "r+b") as f:
            f.truncate(100)
        rc = T.subprocess.run([RWKVCTL, "-e", a.ctl_ep, "import", "r/2", path], capture_output=True)
        check(rc.returncode == 10 and b"400" in rc.stderr, "rwkvctl import of a truncated image: %r" % (rc,))
        # the same further input everywhere
        feed(a, [b"c/0", b"x/0", b"c/1", b"f/1", b"c/2", b"c/3", b"r/1"], later)
        feed(b, [b"c/2"], later)
        pairs = [(b"c/0", b"x/0"), (b"c/1", b"f/1"), (b"c/0", b"c/3"), (b"c/1", b"r/1")]
        chans = sorted({c for pr in pairs for c in pr} | {b"c/2"})
        got = drained_states(a, chans)
        got_b = drained_states(b, [b"c/2"])
        for x, y in pairs:
            check(got[x][1] == got[y][1] and got[x][2] == got[y][2], "%s vs %s: tokens_seen/meta" % (x, y))
            check(got[x][0] == got[y][0], "%s and %s differ after the same input" % (x, y))
        check(got[b"c/2"] == got_b[b"c/2"], "the migrated channel differs from its source")
    finally:
        a.close()
        b.close()


def test_tiers_gen_slot():
    """A generation needs a slot of its own: with every slot held by idle resident channels,
    the least recently active one is demoted for it (before: END error 507)."""
    d = Daemon(max_batch=4, slots=4)  # 2 channel slots (2 are head scratch)
    try:
        s, sub = d.dealer(), d.sub(b"g/")
        time.sleep(0.3)
        for i, c in enumerate((b"g/0", b"g/1")):
            T.send(s, b"TEXT", c, b"p", 1, b"hello %d" % i)
            check(recv(s, what="ACK")[1] == b"ACK", "ACK %s" % c)
        deadline = time.time() + 10
        while any(info(d, c)["queued_messages"] for c in (b"g/0", b"g/1")):
            check(time.time() < deadline, "not drained")
            time.sleep(0.02)
        check(info(d, b"g/0")["tier"] == "resident" and info(d, b"g/1")["tier"] == "resident", "both resident")
        T.send(s, b"GEN", b"g/1", b"p", 2, b'{"max_tokens":4,"temperature":0}')
        check(recv(s, what="ACK")[1] == b"ACK", "GEN ACK")
        while True:
            m = T.next_pub(sub, kinds=(b"END", b"ERROR"))
            check(m[2] != b"ERROR", "the generation failed: %r" % m)
            if m[2] == b"END":
                break
        end = json.loads(m[6])
        check(end["reason"] == "max_tokens" and end["n_tokens"] == 4, "END %r" % end)
        check(info(d, b"g/0")["tier"] == "host", "g/0, idle, made room: %r" % info(d, b"g/0"))
        # and g/0 comes back with its next input
        T.send(s, b"TEXT", b"g/0", b"p", 2, b" again")
        check(recv(s, what="ACK")[1] == b"ACK", "g/0 ACK")
    finally:
        d.close()


def test_tiers_nodurable():
    """Without a snapshot store host memory is the last tier: a new channel demotes the least
    recently active idle one to host memory; with host memory full (host_max_bytes) the next
    new channel gets 507, EVICT 409 and IMPORT 507 (nothing changed); a host-tier channel's
    input swaps it with a resident one even with host memory full; DROP frees host memory.
    States, read with EXPORT (any tier), equal a daemon with slots for every channel."""
    nodur = "durability:\n  enabled: false\n"
    one = 2 * (2 * 64 + 64 * 64) * 4  # the test model's state: 2 layers, C 64, one head of 64
    ref = Daemon(max_batch=4, slots=16, durability=nodur)
    d = Daemon(max_batch=4, slots=5, durability=nodur,  # 3 channel slots, host memory for 1 state
               extra="residency:\n  host_max_bytes: %d\n" % (one + one // 2))
    try:
        rs, s = ref.dealer(), d.dealer()
        seq = {}

        def send(c, text, want=b"ACK"):
            seq[c] = seq.get(c, 0) + 1
            for sock, dm in ((s, d), (rs, ref)):
                T.send(sock, b"TEXT", c, b"p", seq[c], text)
                r = recv(sock, what="reply")
                if dm is ref or want == b"ACK":
                    check(r[1] == b"ACK", "%s: %r" % (c, r))
                else:
                    check(r[1] == b"ERROR" and r[5] == want, "%s: expected %r, got %r" % (c, want, r))
                    seq[c] -= 1
                    return r
            for dm in (d, ref):
                deadline = time.time() + 10
                while info(dm, c)["queued_messages"]:
                    check(time.time() < deadline, "not drained")
                    time.sleep(0.02)

        for i in range(3):
            send(b"s/%d" % i, b"hello %d" % i)
        send(b"s/3", b"new")  # every slot taken: s/0, least recently active, goes to host memory
        check(info(d, b"s/0")["tier"] == "host", "s/0 demoted: %r" % info(d, b"s/0"))
        T.send(s, b"TEXT", b"s/4", b"p", 1, b"full")
        r = recv(s, what="507")
        check(r[1] == b"ERROR" and r[5] == b"507", "host memory full, no store: expected 507, got %r" % r)
        code, body = d.control(b"EVICT", b"s/2")
        check(code == b"409" and b"host_max_bytes" in body, "EVICT with host memory full: %r %r" % (code, body))
        send(b"s/0", b" again")  # swaps with s/1 although host memory is full
        check(info(d, b"s/0")["tier"] == "resident" and info(d, b"s/1")["tier"] == "host",
              "swap: %r %r" % (info(d, b"s/0"), info(d, b"s/1")))
        n, dem, prom = tier_counts(metrics(d))
        check(n == {"resident": 3, "host": 1, "disk": 0} and dem[("resident", "host")] == 2 and prom["host"] == 1,
              "tiers %r %r %r" % (n, dem, prom))
        img1 = export(d, b"s/1")  # from host memory
        code, body = d.control(b"IMPORT", b"n/1", img1)
        check(code == b"507" and d.control(b"INFO", b"n/1")[0] == b"404", "IMPORT with host memory full: %r" % code)
        for c in (b"s/0", b"s/1", b"s/2", b"s/3"):
            check(snap_payload(export(d, c)) == snap_payload(export(ref, c)), "%s differs from the reference" % c)
        d.control_json(b"DROP", b"s/1")
        r = d.control_json(b"IMPORT", b"n/1", img1)
        check(r["tier"] == "host" and not r["replaced"], "IMPORT after DROP freed host memory: %r" % r)
        T.send(rs, b"TEXT", b"s/1", b"p", 2, b" later")  # the reference's s/1 and n/1 get the same
        check(recv(rs, what="ACK")[1] == b"ACK", "ref s/1 ACK")
        T.send(s, b"TEXT", b"n/1", b"p", 1, b" later")  # host -> resident: swaps with s/2
        check(recv(s, what="ACK")[1] == b"ACK", "n/1 ACK")
        while info(ref, b"s/1")["queued_messages"]:
            time.sleep(0.02)
        deadline = time.time() + 10
        while info(d, b"n/1")["queued_messages"] or info(d, b"n/1")["tier"] != "resident":
            check(time.time() < deadline, "n/1 not promoted: %r" % info(d, b"n/1"))
            time.sleep(0.02)
        check(snap_payload(export(d, b"n/1")) == snap_payload(export(ref, b"s/1")), "n/1 differs from ref s/1")
        # residency reloads: a lower resident bound (and room in host memory) demotes at once
        d.write_config(extra="residency:\n  resident_channels: 1\n  host_max_bytes: %d\n" % (4 * one),
                       max_batch=4, slots=5)
        r = d.control_json(b"RELOAD")
        check("residency.resident_channels" in r["changed"], "RELOAD %r" % r)
        deadline = time.time() + 10
        while d.control_json(b"STATUS")["channels"]["resident"] > 1:
            check(time.time() < deadline, "resident bound not applied: %r" % d.control_json(b"STATUS")["channels"])
            time.sleep(0.02)
        check(d.control_json(b"STATUS")["channels"] == {"total": 4, "resident": 1, "host": 3, "disk": 0,
                                                       "limit": 1024}, "%r" % d.control_json(b"STATUS")["channels"])
        for c in (b"s/0", b"s/2", b"s/3"):
            check(snap_payload(export(d, c)) == snap_payload(export(ref, c)), "%s differs after demotion" % c)
    finally:
        d.close()
        ref.close()


def snap_payload(img):
    header_len, = struct.unpack_from("<I", img, 12)
    payload_len, = struct.unpack_from("<Q", img, 80)
    return img[header_len:header_len + payload_len]


def d_tier(d, c):
    return info(d, c)["tier"]


RWKVCTL = os.environ.get("RWKVCTL", "")


if __name__ == "__main__":
    T.run_named(globals(), "test_durable.py")
