#!/usr/bin/python3
"""Fault injection on the real rwkvd: file-system errors on the input log (WAL) and
on snapshots (RWKVD_FAULT, daemon/fsio.h), a torn or damaged WAL tail after kill -9, and
snapshots that must be refused (unknown version, another model's fingerprint), and committed
generations (of a GEN, of an output trigger) across kill -9.

Usage: test_faults.py NAME. Every scenario ends the same way: restart without the fault,
the producer resends everything after its last ACK, and every channel's state (read from the
SIGTERM snapshots, test_durable.drained_states) must equal a run that had no fault, bit for
bit. What each scenario adds is in its docstring. Every receive has a timeout."""
import json
import os
import signal
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_rwkvd as T  # noqa: E402  (skips with 77 when zmq/numpy are missing)
import test_durable as D  # noqa: E402
from test_rwkvd import Daemon, Fail, check, recv  # noqa: E402

KW = D.KW
CHANNELS = D.CHANNELS

# ---- formats (daemon/FORMATS.md) ------------------------------------------------------

_CRC_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    tab = _CRC_TABLE
    for b in data:
        crc = tab[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def snap_path(d, channel, suffix=".snap"):
    return os.path.join(d.dir, "state", "snapshots", channel.decode().replace("/", "%2F") + suffix)


def snap_valid(path):
    """Whether a snapshot file has its magic and a matching trailing crc32c (FORMATS.md §1)."""
    with open(path, "rb") as f:
        b = f.read()
    return len(b) > 12 and b[:8] == b"RWKVSNAP" and struct.unpack("<I", b[-4:])[0] == crc32c(b[:-4])


def snap_rewrite(path, offset, fmt, value):
    """Store value at offset and recompute the crc, so the file is whole but says something else."""
    with open(path, "rb") as f:
        b = bytearray(f.read())
    struct.pack_into(fmt, b, offset, value)
    b[-4:] = struct.pack("<I", crc32c(bytes(b[:-4])))
    with open(path, "wb") as f:
        f.write(b)


def wal_dir(d):
    return os.path.join(d.dir, "state", "wal")


def wal_segments(d):
    return sorted(f for f in os.listdir(wal_dir(d)) if f.startswith("wal-") and f.endswith(".log"))


def wal_records(path):
    """[(offset, frame+body length, lsn, channel, producer, seq)] of one segment (FORMATS.md §2)."""
    with open(path, "rb") as f:
        b = f.read()
    check(b[:8] == b"RWKVWLOG", "%s: not a WAL segment" % path)
    off, out = 32, []
    while off + 16 <= len(b):
        body_len, lsn = struct.unpack_from("<IQ", b, off + 4)
        if off + 16 + body_len > len(b):
            break
        ch_len, pr_len = struct.unpack_from("<HH", b, off + 18)
        seq, = struct.unpack_from("<Q", b, off + 24)
        ch = b[off + 36:off + 36 + ch_len]
        pr = b[off + 36 + ch_len:off + 36 + ch_len + pr_len]
        out.append((off, 16 + body_len, lsn, ch, pr, seq))
        off += 16 + body_len
    return out


# ---- producer that tolerates errors ---------------------------------------------------

class Producer(D.Producer):
    """test_durable.Producer that also takes ERROR replies: send(k) sends up to k unACKed
    messages and returns their replies (every one must come: an unanswered message is a
    failure). A retryable error (§8.2) stops the batch: resending waits for the restart."""

    def send(self, k, timeout_ms=5000):
        batch = self.pending()[:k]
        for c, seq, op, payload in batch:
            T.send(self.s, op, c, b"p", seq, payload)
        replies = []
        for _ in batch:
            r = recv(self.s, timeout_ms, "an ingest reply")
            replies.append(r)
            if r[1] in (b"ACK", b"DUP"):
                self.acked[r[2]] = max(self.acked[r[2]], int(r[4]))
        return replies


def settle(d):
    deadline = time.time() + 20
    while any(d.control_json(b"INFO", c)["queued_messages"] for c in CHANNELS if known(d, c)):
        check(time.time() < deadline, "queues not drained:\n" + d.logtext())
        time.sleep(0.02)


def known(d, c):
    return d.control(b"INFO", c)[0] == b"200"


def finish(d, p, ref, what, kill=False, env_drop=True):
    """Restart without the fault, resend everything after the last ACK, compare with ref."""
    if env_drop:
        d.env.pop("RWKVD_FAULT", None)
    D.restart(d, kill=kill)
    p.connect(d)
    while p.pump(64):
        pass
    D.compare(D.drained_states(d), ref, what)


def until_error(d, p, what, pace=0.0):
    """Send one message at a time (pace seconds apart) until one is answered with an error;
    return that reply."""
    for _ in range(len(p.msgs)):
        time.sleep(pace)
        rs = p.send(1)
        check(rs, "%s: ran out of messages before any error\n%s" % (what, d.logtext()))
        if rs[0][1] == b"ERROR":
            return rs[0]
    raise Fail("%s: no error reply" % what)


def want_errno(spec):
    """The strerror text of a fault spec's errno."""
    return "Input/output error" if "EIO" in spec else "No space left on device"


def metric_value(d, name):
    """One sample of METRICS by its full name (labels included)."""
    code, body = d.control(b"METRICS")
    check(code == b"200", "METRICS %r" % code)
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise Fail("METRICS has no %s" % name)


def acked_sender(s):
    """send(channel, op, payload) on DEALER s with the channel's next seq; the reply must be ACK."""
    seq = {}

    def send(c, op, payload):
        seq[c] = seq.get(c, 0) + 1
        T.send(s, op, c, b"p", seq[c], payload)
        r = recv(s, what="ACK")
        check(r[1] == b"ACK", "%s %s: %r" % (c, op, r))
    return send


def wal_fault(spec, fsync, cut_unacked, pace=0.0):
    """A WAL fault from the first failing call on: the message hit is answered ERROR 503 (never
    ACK), later ones too, duplicates of it are not confirmed, control keeps answering, the log
    names the error. With cut_unacked, kill -9 and cut the WAL at the first record the producer
    got no ACK for, as a machine crash that lost the unsynced pages would: nothing ACKed may
    depend on them (under everysec that is the kill -9 case: ACKed records were written to the
    kernel, which keeps them; a power loss could take up to the last second of them, the
    documented window). pace: seconds between messages, for faults that come with time."""
    msgs = D.messages(11, 90)
    ref = D.reference(msgs, **KW)
    d = Daemon(durability="durability:\n  fsync: %s\n" % fsync, env={"RWKVD_FAULT": spec}, **KW)
    try:
        p = Producer(msgs)
        p.connect(d)
        r = until_error(d, p, spec, pace)
        check(r[5] == b"503", "%s: expected ERROR 503, got %r" % (spec, r))
        n_acked = sum(p.acked.values())
        check(n_acked > 0, "%s: the fault came before any ACK (spec too early)" % spec)
        # the message that failed, again: still an error, not an ACK nor a DUP
        c, seq = r[2], int(r[4])
        m = [x for x in msgs if x[0] == c and x[1] == seq][0]
        T.send(p.s, m[2], c, b"p", seq, m[3])
        r2 = recv(p.s, what="the reply to a resent message under the fault")
        check(r2[1] == b"ERROR" and r2[5] == b"503", "%s: resent seq %d answered %r" % (spec, seq, r2))
        # other channels too, and nothing more was ACKed
        for rr in p.send(8):
            check(rr[1] == b"ERROR", "%s: reply %r under a failed input log" % (spec, rr))
        check(sum(p.acked.values()) == n_acked, "%s: ACKs after the fault" % spec)
        st = d.control_json(b"STATUS")["durability"]
        if "fsync" in spec:  # sticky: STATUS and METRICS show it
            check(st["wal"]["failed"] == want_errno(spec), "%s: STATUS durability.wal.failed %r" % (spec, st))
            check(metric_value(d, "rwkvd_wal_failed") == 1, "%s: rwkvd_wal_failed not 1" % spec)
        some = [c for c in CHANNELS if p.acked[c]][0]
        check(d.control_json(b"INFO", some)["tokens_seen"] > 0, "%s: INFO answers" % spec)
        log = d.logtext()
        want = "Input/output error" if "EIO" in spec else "No space left"
        check("input log" in log and want in log, "%s: the log names the error:\n%s" % (spec, log))
        if cut_unacked:
            d.proc.kill()
            d.proc.wait()
            segs = wal_segments(d)
            cut = None
            for seg in segs:
                for off, _, lsn, ch, _, seq in wal_records(os.path.join(wal_dir(d), seg)):
                    if cut is None and seq > p.acked[ch]:
                        cut = (seg, off, lsn)
            check(cut is not None, "%s: no unacknowledged record in the WAL (nothing to lose)" % spec)
            for seg in segs:  # everything from that record on goes, as lost pages would
                path = os.path.join(wal_dir(d), seg)
                if seg > cut[0]:
                    os.unlink(path)
                elif seg == cut[0]:
                    os.truncate(path, cut[1])
            print("%s: cut the WAL at LSN %d (first record not acknowledged)" % (spec, cut[2]))
            finish(d, p, ref, spec + " then lost unsynced records", kill=True)
        else:
            finish(d, p, ref, spec, kill=True)
        print("ok: %s, %d messages acknowledged before the fault" % (spec, n_acked))
    finally:
        d.close()


def test_wal_write_eio():
    """EIO on a WAL write (fsync no): 503, the write is cut back, restart recovers exactly."""
    wal_fault("wal.write:EIO@20", "no", cut_unacked=False)


def test_wal_write_enospc_restart():
    """ENOSPC on a WAL write under fsync always, then kill -9 and a restart without it."""
    wal_fault("wal.write:ENOSPC@15", "always", cut_unacked=False)


def test_wal_fsync_eio():
    """EIO on the WAL fdatasync under fsync always: the batch it covered is answered 503, not
    ACKed; kill -9 with those records cut from the log (their pages lost) loses nothing ACKed."""
    wal_fault("wal.fsync:EIO@12", "always", cut_unacked=True)


def test_wal_fsync_everysec_enospc():
    """ENOSPC on the everysec fdatasync (the I/O thread's, once a second): the messages before
    it were ACKed once written; from the failure on every message gets 503, not ACK (and no
    record is written after it: nothing unacknowledged to cut); kill -9 and a restart recover
    everything ACKed. Paced so that the once-a-second syncs come while messages flow."""
    wal_fault("wal.fsync:ENOSPC@4", "everysec", cut_unacked=False, pace=0.1)


# ---- snapshot faults ---------------------------------------------------------------

def snapshot_fault(spec, sigterm=False):
    """Both generations on disk, then rwkvd restarted with a snapshot fault: control SNAPSHOT
    fails (an error code and a log line naming the file), both files stay valid, ingest keeps
    going, the input log is not truncated past what a valid snapshot covers (segments of 4 KiB,
    so truncation has plenty to delete); kill -9 and a restart without the fault recover the
    states exactly."""
    msgs = D.messages(13, 140)
    ref = D.reference(msgs, **KW)
    dur = "durability:\n  fsync: no\n  wal_segment_bytes: 4096\n"
    d = Daemon(durability=dur, **KW)
    try:
        p = Producer(msgs)
        p.connect(d)
        p.pump(30)
        settle(d)
        d.control_json(b"SNAPSHOT")
        p.pump(30)
        settle(d)
        d.control_json(b"SNAPSHOT")
        before = {c: (open(snap_path(d, c), "rb").read(), open(snap_path(d, c, ".snap.prev"), "rb").read())
                  for c in CHANNELS}
        d.env["RWKVD_FAULT"] = spec
        D.restart(d, kill=True)
        p.connect(d)
        p.pump(30)
        settle(d)
        code, body = d.control(b"SNAPSHOT")
        check(code != b"200", "%s: SNAPSHOT answered %r %r" % (spec, code, body))
        st = d.control_json(b"STATUS")["durability"]["snapshots"]
        check(st["failed"] > 0 and want_errno(spec) in (st["last_error"] or "") and st["last_failure_unix_ms"] > 0,
              "%s: STATUS durability.snapshots %r" % (spec, st))
        check(metric_value(d, 'rwkvd_snapshots_total{result="failed"}') == st["failed"],
              "%s: rwkvd_snapshots_total{failed} differs from STATUS" % spec)
        log = d.logtext()
        check("snapshot: channel" in log or "snapshots/" in log, "%s: no log line naming the file:\n%s" % (spec, log))
        want = "Input/output error" if "EIO" in spec else "No space left"
        check(want in log, "%s: the log names the error:\n%s" % (spec, log))
        for c in CHANNELS:
            check(snap_valid(snap_path(d, c)), "%s: %s.snap not valid after the fault" % (spec, c))
            check(not os.path.exists(snap_path(d, c, ".snap.tmp")), "%s: a temp file stays behind" % spec)
            now = open(snap_path(d, c), "rb").read()
            prev = snap_path(d, c, ".snap.prev")
            prev = open(prev, "rb").read() if os.path.exists(prev) else None
            if now == before[c][0]:  # failed before the new file went in: both generations as they were
                check(prev == before[c][1], "%s: %s.snap.prev changed" % (spec, c))
            elif "dirsync" in spec:  # failed after the renames: the generations moved by one, both whole
                check(prev == before[c][0], "%s: %s generations did not move by one" % (spec, c))
            else:  # the rotation to .prev failed after the new file went in: .prev is one older
                check("rename" in spec and prev == before[c][1],
                      "%s: %s generations changed unexpectedly" % (spec, c))
        # keeps serving, and more snapshot attempts (interval/token/EVICT) change nothing
        for rr in p.send(20):
            check(rr[1] in (b"ACK", b"DUP"), "%s: ingest under a snapshot fault: %r" % (spec, rr))
        code, body = d.control(b"EVICT", CHANNELS[1])
        check(code != b"200", "%s: EVICT needs a snapshot: %r" % (spec, code))
        check(d.control_json(b"INFO", CHANNELS[1])["tier"] == "resident", "%s: EVICT failed, stays resident" % spec)
        # the input log still reaches back to the oldest generation on disk
        first = int(wal_segments(d)[0][4:-4], 16)
        for c in CHANNELS:
            for suf in (".snap", ".snap.prev"):
                if os.path.exists(snap_path(d, c, suf)):
                    with open(snap_path(d, c, suf), "rb") as f:
                        applied, = struct.unpack_from("<Q", f.read(72), 64)
                    check(first <= applied + 1, "%s: the WAL starts at LSN %d, past %s%s (LSN %d)" %
                          (spec, first, c.decode(), suf, applied))
        n_seg = len(wal_segments(d))
        if sigterm:  # the shutdown snapshot fails too: exit 0, logged, the log covers the rest
            d.proc.send_signal(signal.SIGTERM)
            check(d.proc.wait(20) == 0, "%s: exit status after a failed shutdown snapshot" % spec)
            check("shutdown snapshot" in d.logtext() and "input log still covers" in d.logtext(),
                  "%s: the failed shutdown snapshot is logged:\n%s" % (spec, d.logtext()))
        finish(d, p, ref, spec, kill=True)
        print("ok: %s (%d WAL segments kept at the kill)" % (spec, n_seg))
    finally:
        d.close()


def test_snapshot_write_enospc():
    """... and SIGTERM with the fault: the shutdown snapshot fails, rwkvd exits 0."""
    snapshot_fault("snapshot.write:ENOSPC", sigterm=True)


def test_snapshot_fsync_eio():
    snapshot_fault("snapshot.fsync:EIO")


def test_snapshot_rename_eio():
    """The second rename of the first channel (.snap.link to .prev, after .tmp went into
    place), and every rename after it (the other channels' renames into place)."""
    snapshot_fault("snapshot.rename:EIO@2")


def test_snapshot_link_eio():
    """The second name of the current generation cannot be made: nothing changes."""
    snapshot_fault("snapshot.link:EIO")


def test_snapshot_dirsync_eio():
    snapshot_fault("snapshot.dirsync:EIO")


# ---- a torn or damaged WAL tail ---------------------------------------------------------

def torn_tail(how):
    """kill -9, then damage the last WAL record (cut mid-body, cut mid-frame-header, or one
    flipped payload byte). rwkvd starts, logs the cut, and recovers to the last whole record;
    the damaged record's message counts as never acknowledged (a crash before its ACK), so
    the producer resends it; the states equal the reference."""
    msgs = D.messages(17, 80)
    ref = D.reference(msgs, **KW)
    d = Daemon(**KW)
    try:
        p = Producer(msgs)
        p.connect(d)
        p.pump(50)
        d.proc.kill()
        d.proc.wait()
        seg = os.path.join(wal_dir(d), wal_segments(d)[-1])
        recs = wal_records(seg)
        check(recs, "no records in the last segment")
        off, n, lsn, ch, pr, seq = recs[-1]
        size = os.path.getsize(seg)
        check(off + n == size, "the last record ends the file")
        if how == "body":
            os.truncate(seg, off + n // 2)
        elif how == "header":
            os.truncate(seg, off + 7)
        else:
            with open(seg, "r+b") as f:
                f.seek(off + n - 2)
                b = f.read(1)
                f.seek(off + n - 2)
                f.write(bytes([b[0] ^ 0x10]))
        p.acked[ch] = min(p.acked[ch], seq - 1)
        D.restart(d, kill=True)  # already dead: start again
        log = d.logtext()
        check("torn tail cut" in log and os.path.basename(seg) in log,
              "%s: no log line naming the cut file:\n%s" % (how, log))
        check(os.path.getsize(seg) == off, "%s: the file is cut at the last whole record (%d, not %d)" %
              (how, off, os.path.getsize(seg)))
        info = d.control_json(b"STATUS")
        check(info is not None, "STATUS")
        p.connect(d)
        while p.pump(64):
            pass
        D.compare(D.drained_states(d), ref, "after a torn WAL tail (%s)" % how)
        print("ok: record LSN %d (%s seq %d) damaged (%s) and cut" % (lsn, ch.decode(), seq, how))
    finally:
        d.close()


def test_wal_torn_body():
    torn_tail("body")


def test_wal_torn_header():
    torn_tail("header")


def test_wal_flipped_byte():
    torn_tail("flip")


# ---- snapshots that must be refused ----------------------------------------------------

def refused_snapshot(offset, fmt, value, reason):
    """The newest snapshot of c/0 rewritten as a whole, valid-crc file that this rwkvd must
    not use: the .prev generation and the log instead, with a log line naming file and reason."""
    msgs = D.messages(19, 80)
    ref = D.reference(msgs, **KW)
    d = Daemon(**KW)
    try:
        p = Producer(msgs)
        p.connect(d)
        p.pump(30)
        d.control_json(b"SNAPSHOT")
        p.pump(30)
        check(d.stop(signal.SIGTERM) == 0, "SIGTERM")
        path = snap_path(d, CHANNELS[0])
        if fmt == "<Q" and value is None:
            with open(path, "rb") as f:
                value = struct.unpack_from(fmt, f.read(), offset)[0] ^ 0x1234
        snap_rewrite(path, offset, fmt, value)
        check(snap_valid(path), "the rewritten file has a valid crc")
        D.restart(d)
        log = d.logtext()
        check("c%2F0.snap" in log and reason in log and "previous generation" in log,
              "no log line naming the refused file (%s) and the fallback:\n%s" % (reason, log))
        p.connect(d)
        while p.pump(64):
            pass
        D.compare(D.drained_states(d), ref, "after a refused snapshot (%s)" % reason)
    finally:
        d.close()


def test_snapshot_unknown_version():
    refused_snapshot(8, "<I", 3, "version 3 not supported")


def test_snapshot_foreign_model():
    refused_snapshot(16, "<Q", None, "fingerprint")


# ---- known gaps ---------------------------------------------------------------------------

def evicted_run(restart):
    """4 channels on 2 channel slots (EVICT), an optional SIGTERM restart that leaves 2 of them
    on disk, then a long stream on c/0 over 4 KiB WAL segments and two SNAPSHOTs. Returns
    (segments before the SNAPSHOTs, after them, first LSN kept, final states); with restart, a
    kill -9 and a restart come before the final states."""
    d = Daemon(max_batch=4, slots=4, durability="durability:\n  fsync: no\n  wal_segment_bytes: 4096\n")
    try:
        s = d.dealer()
        seq = {c: 0 for c in CHANNELS}

        def feed(c, text, evict_others=True):
            if evict_others:
                for o in CHANNELS:
                    if o != c and seq[o] and D.info(d, o)["tier"] != "disk":
                        check(d.control_json(b"EVICT", o)["tier"] == "disk", "EVICT %s" % o)
            seq[c] += 1
            T.send(s, b"TEXT", c, b"p", seq[c], text)
            r = recv(s, what="ACK")
            check(r[1] == b"ACK", "%s: %r\n%s" % (c, r, d.logtext()))
            settle(d)

        for i, c in enumerate(CHANNELS):
            feed(c, b"hello %d" % i)
        if restart:
            D.restart(d)
            s = d.dealer()
            st = d.control_json(b"STATUS")["channels"]
            check(st["disk"] >= 2, "after the restart, channels on disk: %r" % st)
        for o in CHANNELS[2:]:
            if D.info(d, o)["tier"] != "disk":
                d.control_json(b"EVICT", o)
        for i in range(60):
            feed(CHANNELS[0], b" and so on, message number %d of the long stream" % i, evict_others=False)
        feed(CHANNELS[1], b" one more", evict_others=False)
        before = wal_segments(d)
        d.control_json(b"SNAPSHOT")
        d.control_json(b"SNAPSHOT")  # both generations past the stream
        after = wal_segments(d)
        first = int(after[0][4:-4], 16)
        if restart:
            D.restart(d, kill=True)
            s = d.dealer()
        for c in CHANNELS:
            feed(c, b" the end", evict_others=False) if D.info(d, c)["tier"] != "disk" else None
        return before, after, first, D.drained_states(d)
    finally:
        d.close()


def test_evicted_truncate():
    """Channels that come back evicted at recovery do not pin the input log: after a restart
    that leaves 2 of 4 channels on disk, two SNAPSHOTs delete the old segments (the first LSN
    kept moves past 1), and a kill -9 + restart still gives the states of the run without
    restarts."""
    _, _, _, ref = evicted_run(False)
    before, after, first, got = evicted_run(True)
    print("WAL segments: %d before the SNAPSHOTs, %d after; first LSN kept %d" % (len(before), len(after), first))
    check(len(before) >= 4, "the stream filled several segments: %r" % before)
    check(first > 1 and len(after) < len(before),
          "segments not deleted past the evicted channels: %r -> %r" % (before, after))
    D.compare(got, ref, "evicted at recovery, WAL truncated, kill -9")


GEN_COMMIT = b'{"commit":true,"max_tokens":12,"temperature":1.0}'  # no seed: the daemon picks it


def gen_commit_run(crash):
    """On c/0: text, a committing GEN, text, SNAPSHOT (crash only), text, a second committing
    GEN, text; other channels get plain input meanwhile. crash: "kill" (kill -9 after the
    second END, then restart), "kill_nosnap" (same without the SNAPSHOT) or None. Returns the
    two ENDs' texts and the final states."""
    d = Daemon(**KW)
    try:
        sub = d.sub(b"c/0")
        s = d.dealer()
        send = acked_sender(s)
        ends = []

        def filler(i):
            for c in CHANNELS[1:]:
                send(c, b"TEXT", b"filler %d on %s" % (i, c))

        send(CHANNELS[0], b"TEXT", b"Once upon a time")
        send(CHANNELS[0], b"GEN", GEN_COMMIT)
        filler(1)
        ends.append(T.collect_gen(sub, CHANNELS[0]))
        send(CHANNELS[0], b"TEXT", b" and then")
        settle(d)
        if crash == "kill":
            d.control_json(b"SNAPSHOT")
        send(CHANNELS[0], b"TEXT", b" and later")
        send(CHANNELS[0], b"GEN", GEN_COMMIT)
        send(CHANNELS[0], b"TEXT", b" queued behind the generation")
        filler(2)
        ends.append(T.collect_gen(sub, CHANNELS[0]))
        for _, end in ends:
            check(end["committed"] and end["n_tokens"] == 12, "END %r" % end)
        settle(d)
        if crash:
            D.restart(d, kill=True)
            s = d.dealer()
            log = d.logtext()
        send(CHANNELS[0], b"TEXT", b" the end")
        filler(3)
        states = D.drained_states(d)
        if crash:  # the recovered generations were not sampled (nor published) again
            check(not sub.poll(200), "a generation ran again after the restart:\n" + log)
        return [e["text"] for _, e in ends], states
    finally:
        d.close()


def test_gen_commit():
    """Tokens of a committing generation are in the input log: after kill -9 (with a snapshot
    between the two generations, and without any), recovery applies them where they were,
    without sampling again (a second sample may differ: no seed was given), and the states
    equal the run without a crash."""
    texts, ref = gen_commit_run(None)
    check(texts[0] != texts[1], "the two generations sampled alike: %r" % texts)
    for crash in ("kill", "kill_nosnap"):
        got_texts, got = gen_commit_run(crash)
        check(got_texts == texts, "%s: the generations before the crash differ from the reference: %r vs %r" %
              (crash, got_texts, texts))
        D.compare(got, ref, "committed generations, %s" % crash)


# c/0 generates after every event, c/1 every 7 input tokens (mostly inside a message, and
# inside the committed tokens of its own earlier generations); both commit
OUTPUT_PROFILES = """    ev:
      kind: continue
      trigger: event
      prompt_suffix: " =>"
      generate: {max_tokens: 6, temperature: 1.0, commit: true}
    tk:
      kind: continue
      trigger: tokens
      every_n_tokens: 7
      prompt_suffix: ""
      generate: {max_tokens: 5, temperature: 1.0, commit: true}
"""


def quiesce(d, sub, ends, chans=CHANNELS):
    """Wait until no channel has queued input or a running generation (checked 3 times in a row),
    collecting the END publications of sub into ends [(channel, END)]."""
    deadline, quiet = time.time() + 30, 0
    while quiet < 3:
        check(time.time() < deadline, "outputs did not settle:\n" + d.logtext())
        while sub.poll(0):
            m = sub.recv_multipart()
            if m[2] == b"END":
                ends.append((m[0], json.loads(m[6])))
        busy = d.control_json(b"STATUS")["generations"] or any(
            d.control_json(b"INFO", c)["queued_messages"] for c in chans)
        quiet = 0 if busy else quiet + 1
        time.sleep(0.05)


def ends_published(d):
    return int(T.metric(d.control(b"METRICS")[1].decode(), 'rwkvd_publish_messages_total{kind="END"}'))


def output_commit_run(crash, extra=""):
    """Output-triggered committing generations (OUTPUT_PROFILES) across kill -9: two rounds of
    TEXT on c/0 (events) and c/1 (tokens), with plain input on c/2, c/3; crash "kill" takes a
    SNAPSHOT between the rounds, "kill_nosnap" none, "kill_tokens" snapshots every few tokens
    (durability.snapshot_every_tokens, so snapshots land inside messages); each kills after the
    second round and restarts; "kill_twice" restarts with snapshots every 8 tokens and kills
    again 0.15 s into the recovery (snapshots taken while recovered output records wait to be
    reached), then restarts. Then TOKENS (no event) on every channel. Returns the ENDs of the
    two rounds, the output records in the input log (FORMATS.md §2), the ENDs published after
    the restart and the final states."""
    dur = "durability:\n  fsync: no\n" + ("  snapshot_every_tokens: 8\n" if crash == "kill_tokens" else "")
    d = Daemon(profiles=OUTPUT_PROFILES, durability=dur, **KW)
    try:
        sub = d.sub(b"c/")
        s = d.dealer()
        send = acked_sender(s)
        ends = []

        send(CHANNELS[0], b"TASK", b"ev")
        send(CHANNELS[1], b"TASK", b"tk")
        for rnd in (1, 2):
            for i in range(3):
                for c in CHANNELS:
                    send(c, b"TEXT", b"round %d, line %d: the quick brown fox on %s" % (rnd, i, c))
            quiesce(d, sub, ends)
            if rnd == 1 and crash == "kill":
                d.control_json(b"SNAPSHOT")
        for c, end in ends:
            check(end["committed"] and end["n_tokens"] > 0, "END on %s: %r" % (c, end))
        records = [r for seg in wal_segments(d) for r in wal_records(os.path.join(wal_dir(d), seg))
                   if r[4].startswith(b"$out:")]
        after = None
        if crash == "kill_twice":
            d.durability += "  snapshot_every_tokens: 8\n"
            d.write_config(OUTPUT_PROFILES, "", "", KW["max_batch"], KW["slots"])
            D.restart(d, kill=True)
            time.sleep(0.15)
        if crash:
            D.restart(d, kill=True)
            s = d.dealer()
            quiesce(d, sub, [])
            after = ends_published(d)
            check("never reached" not in d.logtext(), "%s: a recovered output record was not applied:\n%s" %
                  (crash, d.logtext()))
        for c in CHANNELS:
            send(c, b"TOKENS", struct.pack("<4i", 32, 116, 104, 101))  # " the", no event
        quiesce(d, sub, [])
        return ends, records, after, D.drained_states(d)
    finally:
        d.close()


def test_output_commit():
    """A committing generation started by an output trigger (trigger: event at the end of a TEXT,
    trigger: tokens inside one) is logged when it ends (op TOKENS, producer "$out:<tokens seen>",
    seq = the LSN of the trigger point): after kill -9 (with a snapshot between the rounds, with
    none, with snapshots every 8 tokens, inside messages, and killed again during a recovery
    that takes snapshots) recovery applies its tokens at the
    same point without sampling again, so no END is published after the restart, and the states
    equal the run without a crash bit for bit."""
    ref_ends, ref_records, _, ref = output_commit_run(None)
    n0 = sum(1 for c, _ in ref_ends if c == CHANNELS[0])
    n1 = sum(1 for c, _ in ref_ends if c == CHANNELS[1])
    check(n0 == 6 and n1 >= 6, "generations: %d on c/0 (6 events), %d on c/1" % (n0, n1))
    check(len(ref_records) == len(ref_ends), "%d output records in the input log for %d generations" %
          (len(ref_records), len(ref_ends)))
    for crash in ("kill", "kill_nosnap", "kill_tokens", "kill_twice"):
        ends, records, after, got = output_commit_run(crash)
        for c in CHANNELS[:2]:  # each channel's in order (the two channels' interleave varies)
            got_t, ref_t = [e["text"] for x, e in ends if x == c], [e["text"] for x, e in ref_ends if x == c]
            check(got_t == ref_t, "%s: %s: the generations before the crash differ from the reference: %r vs %r" %
                  (crash, c, got_t, ref_t))
        check(len(records) == len(ends), "%s: %d output records for %d generations" % (crash, len(records), len(ends)))
        check(after == 0, "%s: %d generation(s) ran and were published again after the restart" % (crash, after))
        D.compare(got, ref, "output-triggered committed generations, %s" % crash)


def output_failed_run(crash):
    """c/0 (profile ev) with state_slots 3: one slot for the channel, none for a generation, so
    each event's generation fails with 507 and commits nothing. crash: kill -9 after three
    events, restart with state_slots 16. Returns the 507 errors, the output records' payload
    sizes, the ENDs published after the restart and the final state."""
    c = CHANNELS[0]
    d = Daemon(profiles=OUTPUT_PROFILES, max_batch=4, slots=3)
    try:
        sub = d.sub(c)
        s = d.dealer()
        for seq, (op, payload) in enumerate([(b"TASK", b"ev")] + [(b"TEXT", b"event %d. " % i) for i in range(3)]):
            T.send(s, op, c, b"p", seq + 1, payload)
            check(recv(s, what="ACK")[1] == b"ACK", "ACK %s" % op)
        errors = []
        while len(errors) < 3:
            m = T.next_pub(sub, kinds=(b"ERROR",))
            errors.append(int(m[6]))
        quiesce(d, sub, [], [c])
        records = [r for seg in wal_segments(d) for r in wal_records(os.path.join(wal_dir(d), seg))
                   if r[4].startswith(b"$out:")]
        sizes = [size - 36 - len(ch) - len(pr) for _, size, _, ch, pr, _ in records]
        after = None
        if crash:
            d.write_config(OUTPUT_PROFILES, "", "", 4, 16)
            D.restart(d, kill=True)
            s = d.dealer()
            quiesce(d, sub, [], [c])
            after = ends_published(d)
        T.send(s, b"TOKENS", c, b"p", 5, struct.pack("<4i", 32, 116, 104, 101))
        check(recv(s, what="ACK")[1] == b"ACK", "ACK TOKENS")
        return errors, sizes, after, D.drained_states(d, [c])
    finally:
        d.close()


def test_output_commit_failed():
    """A committing output generation that fails (507, no free state slot) is logged with no
    tokens: after kill -9 and a restart with slots to spare, recovery does not run it (no END
    after the restart), and the state equals the run without a crash, which committed nothing."""
    errors, sizes, _, ref = output_failed_run(None)
    check(errors == [507] * 3, "errors %r" % errors)
    check(sizes == [0] * 3, "output records with payload sizes %r, expected three empty ones" % sizes)
    errors, sizes, after, got = output_failed_run("kill")
    check(errors == [507] * 3 and sizes == [0] * 3, "before the crash: errors %r, records %r" % (errors, sizes))
    check(after == 0, "%d generation(s) ran after the restart" % after)
    D.compare(got, ref, "failed output generations, kill -9, more slots", [CHANNELS[0]])


if __name__ == "__main__":
    T.run_named(globals(), "test_faults.py")
