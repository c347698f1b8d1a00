#!/usr/bin/python3
"""The I/O thread (daemon/bio.c) on the real rwkvd: ACK timing under each fsync policy and a
loop that keeps answering while the disk is slow.

Usage: test_bio.py NAME (everysec_ack | always_group_commit | always_fsync_error |
snapshot_no_stall | evict_backlog). Slow disks come from RWKVD_FAULT's SLEEP rules (daemon/fsio.h): the
fsyncs named stall that long on the I/O thread, then succeed. Time bounds are loose (a shared
2-core VM): each is several times below what a loop waiting on the disk would need, and the
figure is printed. Every receive has a timeout."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_rwkvd as T  # noqa: E402  (skips with 77 when zmq/numpy are missing)
import test_durable as D  # noqa: E402
from test_rwkvd import Daemon, check, recv  # noqa: E402

KW = D.KW


def test_everysec_ack():
    """everysec ACKs once written: 200 messages in windows of 10 are all ACKed within a few
    seconds although every log fdatasync after the first stalls 1.5 s (a loop waiting for the
    flush needs about a second per window: 20 s); then kill -9 loses nothing ACKed."""
    msgs = D.messages(21, 200)
    ref = D.reference(msgs, **KW)
    d = Daemon(durability="durability:\n  fsync: everysec\n", env={"RWKVD_FAULT": "wal.fsync:SLEEP1500@2"}, **KW)
    try:
        p = D.Producer(msgs)
        p.connect(d)
        t0 = time.time()
        while p.pump(10):
            pass
        dt = time.time() - t0
        print("everysec: 200 messages ACKed in %.2f s (windows of 10, fdatasync stalled 1.5 s)" % dt)
        check(dt < 5.0, "everysec: ACKs took %.2f s: they wait for the flush" % dt)
        st = d.control_json(b"STATUS")["durability"]
        check(st["fsync"] == "everysec", "STATUS fsync %r" % st)
        D.restart(d, kill=True)  # kill -9 right after the last ACK
        d.env.pop("RWKVD_FAULT", None)
        p.connect(d)
        while p.pump(64):
            pass
        D.compare(D.drained_states(d), ref, "everysec, kill -9 after the ACKs")
        print("ok: kill -9 after ACK under everysec lost nothing")
    finally:
        d.close()


def test_always_group_commit():
    """always: no ACK before an fdatasync covering the record has completed (each stalls 1 s);
    the 40 messages sent while one flush runs share the next one (one flush per message would
    take 40 s)."""
    msgs = D.messages(22, 41)
    ref = D.reference(msgs, **KW)
    d = Daemon(durability="durability:\n  fsync: always\n", env={"RWKVD_FAULT": "wal.fsync:SLEEP1000@2"}, **KW)
    try:
        p = D.Producer(msgs)
        p.connect(d)
        first, rest = msgs[0], msgs[1:]
        t0 = time.time()
        T.send(p.s, first[2], first[0], b"p", first[1], first[3])
        check(not p.s.poll(700), "always: an ACK came before the fdatasync covering it completed")
        for c, seq, op, payload in rest:
            T.send(p.s, op, c, b"p", seq, payload)
        for _ in msgs:
            r = recv(p.s, 10000, "an ACK after the flush")
            check(r[1] == b"ACK", "always: reply %r" % r)
            p.acked[r[2]] = max(p.acked[r[2]], int(r[4]))
        dt = time.time() - t0
        print("always: 41 messages ACKed in %.2f s with every flush stalled 1 s" % dt)
        check(dt >= 0.9, "always: ACKed in %.2f s, before the flush could complete" % dt)
        check(dt < 8.0, "always: %.2f s: no group commit" % dt)
        st = d.control_json(b"STATUS")["durability"]["wal"]
        check(st["durable_lsn"] == st["next_lsn"] - 1, "always: everything ACKed is durable: %r" % st)
        D.restart(d, kill=True)
        d.env.pop("RWKVD_FAULT", None)
        p.connect(d)
        while p.pump(64):
            pass
        D.compare(D.drained_states(d), ref, "always, kill -9 after the ACKs")
        print("ok: group commit")
    finally:
        d.close()


def test_always_fsync_error():
    """always, the second flush fails (after a stall): the message it covered is answered 503,
    never ACK; STATUS names the error; the loop answers control meanwhile."""
    msgs = D.messages(23, 10)
    d = Daemon(durability="durability:\n  fsync: always\n",
               env={"RWKVD_FAULT": "wal.fsync:SLEEP800@2,wal.fsync:EIO@3"}, **KW)
    try:
        s = d.dealer()
        c, seq, op, payload = msgs[0]
        T.send(s, op, c, b"p", seq, payload)
        t0 = time.time()
        while not s.poll(50):  # the loop answers control while the flush stalls
            check(d.control_json(b"STATUS")["durability"]["wal"]["failed"] is None, "failed too early")
            check(time.time() - t0 < 10, "no reply to the first message")
        r = s.recv_multipart()
        check(r[1] == b"ACK", "first message (flush ok): %r" % r)
        c, seq, op, payload = msgs[1]
        T.send(s, op, c, b"p", seq, payload)
        check(not s.poll(500), "a reply before the failing flush completed")
        r = recv(s, 10000, "the reply after the failed flush")
        check(r[1] == b"ERROR" and r[5] == b"503", "second message (flush failed): %r" % r)
        st = d.control_json(b"STATUS")["durability"]["wal"]
        check(st["failed"] == "Input/output error", "STATUS durability.wal.failed %r" % st)
        for c, seq, op, payload in msgs[2:5]:
            T.send(s, op, c, b"p", seq, payload)
            r = recv(s, 5000, "a reply under the failed log")
            # 503, or 425 for a pair paused by its earlier 503 (PROTOCOL.md §8): never ACK
            check(r[1] == b"ERROR" and r[5] in (b"503", b"425"), "after the failure: %r" % r)
        print("ok: no ACK before its flush; a failed flush answers 503")
    finally:
        d.close()


def test_snapshot_no_stall():
    """Background snapshot rounds of 40 channels whose snapshot fsyncs stall 100 ms each (a
    round takes seconds) while a producer sends one message at a time, 10 ms apart, under
    fsync always (each ACK waits for a log flush, which must not queue behind the snapshot
    writes): every ACK comes within a fraction of a second, and the states equal a run
    without the stall."""
    chans = [b"s/%d" % i for i in range(40)]
    msgs = D.messages(24, 400, chans)
    kw = dict(max_batch=16, slots=64)
    ref = D.reference(msgs, chans, **kw)
    dur = "durability:\n  fsync: always\n  snapshot_every_tokens: 2000\n"
    d = Daemon(durability=dur, env={"RWKVD_FAULT": "snapshot.fsync:SLEEP100"}, **kw)
    try:
        p = D.Producer(msgs)
        p.connect(d)
        worst, n, during = 0.0, 0, 0
        t_end = time.time() + 60
        while p.pending():
            time.sleep(0.01)
            t0 = time.time()
            p.pump(1)
            worst = max(worst, time.time() - t0)
            n += 1
            if n % 20 == 0:
                st = d.control_json(b"STATUS")["durability"]["snapshots"]
                during = max(during, st["written"])
            check(time.time() < t_end, "too slow")
        st = d.control_json(b"STATUS")["durability"]["snapshots"]
        print("snapshot round: %d snapshots written while %d messages were sent one at a time; slowest "
              "ACK %.3f s" % (st["written"], n, worst))
        check(during > 0, "no snapshot was written while messages were sent (no round ran):\n" + d.logtext())
        check(worst < 0.5, "an ACK took %.3f s during a snapshot round: the loop waited on the disk" % worst)
        D.compare(D.drained_states(d, chans), ref, "background snapshots with a slow disk", chans)
        print("ok: the loop kept answering during the snapshot round")
    finally:
        d.close()


def test_evict_backlog():
    """Tier churn on a slow disk: 12 channels over 2 resident slots and host memory for one
    state, so nearly every message restores a channel from disk and evicts another (two
    snapshot writes, whose fsyncs stall 40 ms each). The evictions queued on the I/O thread stay
    bounded: a SNAPSHOT right after the last ACK (it waits for every queued write) answers
    within a few seconds, not after the whole backlog (about 10 s of writes for 150 messages
    when nothing bounds it), SIGTERM exits as quickly, and the states equal the run without
    tiering."""
    chans = [b"e/%d" % i for i in range(12)]
    msgs = D.messages(25, 150, chans)
    kw = dict(max_batch=4, slots=16)
    ref = D.reference(msgs, chans, **kw)
    res = "residency:\n  resident_channels: 2\n  idle_ttl: 200ms\n  host_max_bytes: 40000\n"
    d = Daemon(durability="durability:\n  fsync: everysec\n", extra=res,
               env={"RWKVD_FAULT": "snapshot.fsync:SLEEP40"}, **kw)
    try:
        p = D.Producer(msgs)
        p.connect(d)
        t0 = time.time()
        while p.pump(1, timeout_ms=30000):  # paced: each lands on an idle daemon and churns the tiers
            time.sleep(0.01)
        t1 = time.time()
        code, _ = d.control(b"SNAPSHOT")
        t2 = time.time()
        m = D.metrics(d)
        prom = sum(v for k, v in m.items() if 'rwkvd_tier_promotions_total{from="disk"}' in k)
        print("evict backlog: 150 messages ACKed in %.2f s; %d restores from disk; SNAPSHOT after the last ACK "
              "took %.2f s" % (t1 - t0, prom, t2 - t1))
        check(code == b"200", "SNAPSHOT answered %r" % code)
        check(prom >= 50, "too little tier churn: %d restores from disk" % prom)
        check(t2 - t1 < 4.0, "SNAPSHOT took %.2f s: it waited behind a backlog of evictions" % (t2 - t1))
        got = D.drained_states(d, chans)  # SIGTERM within Daemon.stop's 10 s
        D.compare(got, ref, "tier churn on a slow disk", chans)
        print("ok: evictions queued stay bounded")
    finally:
        d.close()


if __name__ == "__main__":
    T.run_named(globals(), "test_bio.py")
