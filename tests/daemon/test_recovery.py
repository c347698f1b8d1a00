#!/usr/bin/python3
"""Durable state at the edges of recovery, on the real rwkvd binary: a SIGTERM in the middle
of a committing generation, a channel whose snapshot generations are all damaged, a full disk
seen by STATUS and METRICS, and tier moves around committing generations.

Usage: test_recovery.py NAME. States are compared as test_durable.py does: after every queue
drained, SIGTERM snapshots each channel, and the snapshot files must equal those of a run
without the interruption, bit for bit. Every receive has a timeout."""
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_rwkvd as T  # noqa: E402  (skips with 77 when zmq/numpy are missing)
import test_durable as D  # noqa: E402
from test_rwkvd import Daemon, Fail, check, recv  # noqa: E402

CONT = """    cont:
      kind: continue
      trigger: request
      prompt_suffix: ""
      generate: {max_tokens: 64, temperature: 1.0}
"""
OUT_COMMIT = """    oc:
      kind: continue
      trigger: event
      prompt_suffix: " =>"
      generate: {max_tokens: %d, temperature: 1.0, seed: 3, commit: true}
"""


def sender(s, producer=b"p"):
    """send(channel, op, payload) with the channel's next seq; the reply must be ACK."""
    seq = {}

    def send(c, op, payload):
        seq[c] = seq.get(c, 0) + 1
        T.send(s, op, c, producer, seq[c], payload)
        r = recv(s, what="ACK of %s %s" % (c, op))
        check(r[1] == b"ACK", "%s %s seq %d: %r" % (c, op, seq[c], r))
    return send


def wait_for(what, cond, timeout=30.0, d=None):
    deadline = time.time() + timeout
    while not cond():
        check(time.time() < deadline, "timed out waiting for %s%s" % (what, ("\n" + d.logtext()) if d else ""))
        time.sleep(0.01)


def quiet(d, chans):
    """No generation runs and no channel has input queued, three polls in a row."""
    n = 0
    deadline = time.time() + 60
    while n < 3:
        check(time.time() < deadline, "did not settle:\n" + d.logtext())
        busy = d.control_json(b"STATUS")["generations"] or any(
            d.control_json(b"INFO", c)["queued_messages"] for c in chans)
        n = 0 if busy else n + 1
        time.sleep(0.03)


# ---- SIGTERM during a committing generation -----------------------------------------------

GEN_LONG = b'{"commit":true,"seed":1,"max_tokens":6000}'


def sigterm_gen_run(interrupt, op):
    """c/0 (profile cont): TASK, TEXT, a committing GEN (op "gen") or an event whose output
    generation commits (op "out", profile oc), TEXT; interrupt None, "term" or "kill" while
    the generation runs, then restart. Returns c/0's final state (and c/1's, plain input)."""
    chans = [b"c/0", b"c/1"]
    d = Daemon(profiles=CONT + OUT_COMMIT % 6000, durability="durability:\n  fsync: everysec\n", **D.KW)
    try:
        s = d.dealer()
        send = sender(s)
        send(b"c/0", b"TASK", b"cont" if op == "gen" else b"oc")
        send(b"c/0", b"TEXT", b"hello world")
        send(b"c/1", b"TEXT", b"plain input")
        if op == "gen":
            send(b"c/0", b"GEN", GEN_LONG)
        if op == "gen":
            send(b"c/0", b"TEXT", b"after")
        else:  # tokens: no event, so no second output
            send(b"c/0", b"TOKENS", b"".join(b"%c\0\0\0" % ch for ch in b"after"))
        if interrupt:
            wait_for("the generation to start", lambda: d.control_json(b"STATUS")["generations"] == 1, d=d)
            time.sleep(0.05)
            check(d.control_json(b"STATUS")["generations"] == 1, "the generation ended too soon for the test")
            D.restart(d, kill=interrupt == "kill")
        quiet(d, chans)
        return D.drained_states(d, chans)
    finally:
        d.close()


def test_sigterm_gen_commit():
    """SIGTERM while a committing generation (of a GEN, then of an output trigger) runs: after
    the restart the channel's state equals the uninterrupted run's and kill -9's (the
    generation's tokens applied exactly once; it runs again after the restart)."""
    chans = [b"c/0", b"c/1"]
    for op in ("gen", "out"):
        ref = sigterm_gen_run(None, op)
        if op == "gen":
            check(ref[b"c/0"][1] > 6000 + len(b"hello world") + len(b"after"),
                  "reference tokens_seen %d" % ref[b"c/0"][1])
        for how in ("term", "kill"):
            got = sigterm_gen_run(how, op)
            D.compare(got, ref, "%s during a committing generation (%s)" % (how, op), chans)


# ---- a full disk, seen by monitoring ------------------------------------------------------

def wal_metric(d, name):
    return T.metric(d.control(b"METRICS")[1].decode(), name)


def test_wal_enospc_visible():
    """Input-log appends fail with ENOSPC for a while (RWKVD_FAULT wal.write:ENOSPC@N-M: the
    disk fills, then has room again): while they fail, STATUS durability.wal.failed names the
    error and METRICS rwkvd_wal_failed is 1 (the alert README suggests), append errors are
    counted; once an append succeeds again (no restart) ingest ACKs and both clear."""
    d = Daemon(env={"RWKVD_FAULT": "wal.write:ENOSPC@6-8"})
    try:
        s = d.dealer()
        seq, acked = 0, 0
        st = d.control_json(b"STATUS")["durability"]["wal"]
        check(st["failed"] is None and st["append_errors"] == 0 and not st["failed_until_restart"], "%r" % st)
        check(wal_metric(d, "rwkvd_wal_failed") == 0, "rwkvd_wal_failed before the fault")
        r = None
        for _ in range(20):
            seq += 1
            T.send(s, b"TEXT", b"c/0", b"p", seq, b"line %d" % seq)
            r = recv(s, what="a reply")
            if r[1] != b"ACK":
                break
            acked += 1
        check(r[1] == b"ERROR" and r[5] == b"503", "expected ERROR 503 once the disk is full, got %r" % r)
        check(acked > 0, "no ACK before the fault")
        st = d.control_json(b"STATUS")["durability"]["wal"]
        check(st["failed"] and "No space left" in st["failed"], "STATUS durability.wal.failed under ENOSPC: %r" % st)
        check(st["append_errors"] >= 1 and not st["failed_until_restart"] and st["last_failure_unix_ms"] > 0,
              "STATUS durability.wal under ENOSPC: %r" % st)
        check(wal_metric(d, "rwkvd_wal_failed") == 1, "METRICS rwkvd_wal_failed is not 1 under ENOSPC")
        check(wal_metric(d, "rwkvd_wal_append_errors_total") >= 1, "rwkvd_wal_append_errors_total")
        check(wal_metric(d, "rwkvd_wal_failed_until_restart") == 0, "an append error is not for good")
        # the producer resends the refused seq (PROTOCOL.md §8.2) until the disk has room again
        for _ in range(10):
            T.send(s, b"TEXT", b"c/0", b"p", seq, b"line %d" % seq)
            r = recv(s, what="the reply to a resend")
            if r[1] == b"ACK":
                break
            check(r[1] == b"ERROR" and r[5] == b"503", "resend answered %r" % r)
        check(r[1] == b"ACK", "no ACK once the disk has room again: %r\n%s" % (r, d.logtext()))
        st = d.control_json(b"STATUS")["durability"]["wal"]
        check(st["failed"] is None and st["append_errors"] == 3, "STATUS after the disk has room again: %r" % st)
        check(wal_metric(d, "rwkvd_wal_failed") == 0, "rwkvd_wal_failed stays 1 after appends succeed")
        check("appends succeed again" in d.logtext(), "no log line for the recovery:\n" + d.logtext())
        T.send(s, b"TEXT", b"c/0", b"p", seq + 1, b"more")
        r = recv(s, what="the next reply")
        check(r[1] == b"ACK", "next message %r" % r)
    finally:
        d.close()


# ---- tier moves around committing generations ---------------------------------------------

TIER_CHANS = [b"t/%d" % i for i in range(6)]


def retry_sender(s, producer=b"p", seq=None):
    """A sender that resends a message answered 507 (no state slot right now, a retryable
    code, PROTOCOL.md §8.2) after a short back-off, as a producer does; ACK in the end. seq:
    the last seq sent per channel (shared with a sender on a new socket after a restart)."""
    seq = {} if seq is None else seq

    def send(c, op, payload):
        seq[c] = seq.get(c, 0) + 1
        for _ in range(500):
            T.send(s, op, c, producer, seq[c], payload)
            r = recv(s, what="reply to %s %s" % (c, op))
            if not (r[1] == b"ERROR" and r[5] == b"507"):
                break
            time.sleep(0.01)
        check(r[1] == b"ACK", "%s %s seq %d: %r" % (c, op, seq[c], r))
    return send


def tier_gen_run(slots, evict, extra="", rounds=4, chans=TIER_CHANS, kill_after=()):
    """Every channel of chans runs profile oc (an event's output generation commits 8 tokens);
    `rounds` rounds of one TEXT event per channel, sent back to back, so outputs of several
    channels want a generation slot at once. slots: model.state_slots (2 are scratch). evict:
    EVICT another channel from control after every message (a deterministic churn).
    kill_after: kill -9 and restart after these message counts (every message before was
    ACKed, so the producer goes on with the next seqs). Returns (final states, ERROR
    publications seen)."""
    d = Daemon(profiles=OUT_COMMIT % 8, extra=extra, max_batch=4, slots=slots)
    try:
        sub = d.sub(b"t/")
        seqs = {}
        send = retry_sender(d.dealer(), seq=seqs)
        errors = []
        n = 0

        def drain_pubs():
            while sub.poll(0):
                m = sub.recv_multipart()
                if m[2] == b"ERROR":
                    errors.append(m)

        for c in chans:
            send(c, b"TASK", b"oc")
        for r in range(rounds):
            for i, c in enumerate(chans):
                send(c, b"TEXT", b"round %d on %s: the quick brown fox" % (r, c))
                if evict:
                    victim = chans[(i + r + 1) % len(chans)]
                    code, body = d.control(b"EVICT", victim)
                    check(code in (b"200", b"409"), "EVICT %s: %r %r" % (victim, code, body))
                n += 1
                if n in kill_after:
                    D.restart(d, kill=True)
                    send = retry_sender(d.dealer(), seq=seqs)
                drain_pubs()
        quiet(d, chans)
        drain_pubs()
        return D.drained_states(d, chans), errors
    finally:
        d.close()


def test_tier_gen_commit():
    """Six channels whose event outputs commit a generation, on 2 channel slots (state_slots 4)
    with a host tier, EVICT from control between messages: no generation fails for want of a
    slot (it waits for one, as input waits for a promotion) and the final states equal a run
    with a slot for everything."""
    ref, errs = tier_gen_run(64, False)
    check(not errs, "reference run published errors: %r" % errs)
    got, errs = tier_gen_run(4, True, extra="residency:\n  host_max_bytes: 1000000\n")
    check(not errs, "errors under tier pressure: %r" % errs[:3])
    D.compare(got, ref, "2 slots, EVICT between messages", TIER_CHANS)


def test_tier_gen_churn():
    """The same under churn: 3 channel slots, a small host tier and idle_ttl 100ms pushing idle
    channels on to disk, EVICT between messages, and kill -9 twice while outputs generate:
    the final states equal the run with a slot for everything."""
    ref, _ = tier_gen_run(64, False, rounds=5)
    state_bytes = len(ref[TIER_CHANS[0]][0])
    conf = "residency:\n  idle_ttl: 100ms\n  host_max_bytes: %d\n" % (2 * state_bytes + 10)
    got, errs = tier_gen_run(5, True, extra=conf, rounds=5, kill_after=(9, 20))
    check(not [e for e in errs if e[6] == b"507"], "507 under tier churn: %r" % errs[:3])
    D.compare(got, ref, "3 slots, host tier, idle_ttl, EVICT and kill -9", TIER_CHANS)


# ---- a channel whose snapshots are all damaged --------------------------------------------

def flip(path, offset=200):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


def snap_file(d, c, suffix):
    return os.path.join(d.dir, "state", "snapshots", c.decode().replace("/", "%2F") + suffix)


DAMAGE_CHANS = [b"c/0", b"c/1", b"c/2"]


def damaged_setup(extra_dur=""):
    """c/0..c/2 fed, two SNAPSHOTs (the input log is cut behind them), more input, SIGTERM;
    then both snapshot generations of c/0 and c/2 damaged. Returns the stopped daemon and the
    last seq sent per channel."""
    dur = "durability:\n  fsync: no\n  wal_segment_bytes: 4096\n" + extra_dur
    d = Daemon(durability=dur, max_batch=4, slots=16)
    seqs = {}
    send = retry_sender(d.dealer(), seq=seqs)
    for k in range(3):
        for i in range(12):
            for c in DAMAGE_CHANS:
                send(c, b"TEXT", b"part %d line %d on %s, long enough to fill log segments" % (k, i, c))
        quiet(d, DAMAGE_CHANS)
        if k < 2:
            d.control_json(b"SNAPSHOT")
    check(d.control_json(b"STATUS")["durability"]["wal"]["first_lsn"] > 1, "the input log was not cut")
    check(d.stop(signal.SIGTERM) == 0, "SIGTERM:\n" + d.logtext())
    for c in (b"c/0", b"c/2"):
        for suffix in (".snap", ".snap.prev"):
            flip(snap_file(d, c, suffix))
    return d, seqs


def restart_stopped(d):
    for ep in (d.ingest_ep, d.pub_ep, d.ctl_ep):
        try:
            os.unlink(ep[6:])
        except OSError:
            pass
    d.log.close()
    d.start()


def test_damaged_channel():
    """Both snapshot generations of c/0 and c/2 damaged, the input log cut behind them: they
    are not rebuilt from the log (a partial state) but marked damaged: ingest answers 423,
    INFO, CHANNELS, STATUS and METRICS show them, EXPORT answers 423, the files stay; c/1 is
    served. A restart keeps them damaged. RESET clears c/0 (it starts from a zero state, equal
    to a fresh channel fed the same input), DROP clears c/2. With
    durability.rebuild_damaged: true the old behaviour (rebuilt from the log alone) is chosen."""
    d, seqs = damaged_setup()
    try:
        files = {c: open(snap_file(d, c, ".snap"), "rb").read() for c in (b"c/0", b"c/2")}
        restart_stopped(d)
        log = d.logtext()
        check("marked damaged" in log and "c/0" in log, "no log line for the damaged channel:\n" + log)
        s = d.dealer()
        for c in (b"c/0", b"c/2"):
            T.send(s, b"TEXT", c, b"p", seqs[c] + 1, b"after the damage")
            r = recv(s, what="reply for a damaged channel")
            check(r[1] == b"ERROR" and r[5] == b"423", "%s: expected ERROR 423, got %r" % (c, r))
            check(d.control_json(b"INFO", c)["damaged"] is True, "INFO %s" % c)
        T.send(s, b"TEXT", b"c/1", b"p", seqs[b"c/1"] + 1, b"healthy")
        check(recv(s, what="c/1")[1] == b"ACK", "c/1 is not served")
        seqs[b"c/1"] += 1
        check(d.control_json(b"INFO", b"c/1")["damaged"] is False, "INFO c/1")
        st = d.control_json(b"STATUS")["durability"]
        check(st["damaged_channels"] == 2, "STATUS durability.damaged_channels %r" % st)
        check(T.metric(d.control(b"METRICS")[1].decode(), "rwkvd_channels_damaged") == 2, "METRICS")
        listed = {e["name"]: e.get("damaged", False) for e in d.control_json(b"CHANNELS")["channels"]}
        check(listed == {"c/0": True, "c/1": False, "c/2": True}, "CHANNELS %r" % listed)
        code, body = d.control(b"EXPORT", b"c/0")
        check(code == b"423", "EXPORT of a damaged channel: %r %r" % (code, body[:200]))
        # a restart keeps it damaged: files and log untouched
        D.restart(d)
        for c in (b"c/0", b"c/2"):
            check(open(snap_file(d, c, ".snap"), "rb").read() == files[c], "%s.snap changed" % c)
        check(d.control_json(b"STATUS")["durability"]["damaged_channels"] == 2, "damaged after a restart")
        # the operator clears them
        r = d.control_json(b"RESET", b"c/0")
        check(r["tokens_seen"] == 0, "RESET %r" % r)
        d.control_json(b"DROP", b"c/2")
        check(d.control(b"INFO", b"c/2")[0] == b"404", "c/2 after DROP")
        check(d.control_json(b"STATUS")["durability"]["damaged_channels"] == 0, "still damaged after RESET/DROP")
        check(T.metric(d.control(b"METRICS")[1].decode(), "rwkvd_channels_damaged") == 0, "METRICS after clearing")
        send = retry_sender(d.dealer(), seq=seqs)
        tail = [b"a fresh start", b" and more after it"]
        for t in tail:
            send(b"c/0", b"TEXT", t)
        quiet(d, [b"c/0"])
        D.restart(d)
        check(d.control_json(b"INFO", b"c/0")["damaged"] is False, "c/0 damaged again after a restart")
        got = D.drained_states(d, [b"c/0"])
    finally:
        d.close()
    ref = Daemon(max_batch=4, slots=16)
    try:
        send = retry_sender(ref.dealer())
        for t in tail:
            send(b"c/0", b"TEXT", t)
        want = D.drained_states(ref, [b"c/0"])
    finally:
        ref.close()
    D.compare(got, want, "a damaged channel after RESET", [b"c/0"])
    # the documented alternative: rebuilt from the input log alone and served
    d, seqs = damaged_setup("  rebuild_damaged: true\n")
    try:
        restart_stopped(d)
        check("rebuild_damaged" in d.logtext(), "no log line for the rebuild:\n" + d.logtext())
        check(d.control_json(b"STATUS")["durability"]["damaged_channels"] == 0, "rebuild_damaged: still damaged")
        s = d.dealer()
        T.send(s, b"TEXT", b"c/0", b"p", seqs[b"c/0"] + 1, b"served")
        check(recv(s, what="reply")[1] == b"ACK", "rebuild_damaged: c/0 not served")
    finally:
        d.close()


# ---- queued input waits on disk instead of 507 ----------------------------------------------

PAGE_CHANS = [b"p/%d" % i for i in range(24)]


def page_run(slots, kill=False):
    """24 channels, 3 rounds of one TEXT each, sent as fast as the replies come; every reply
    must be ACK (no 507: input for a channel that has no slot waits on disk until the scheduler
    pages it in). kill: kill -9 and restart after the second round. Returns the final states."""
    d = Daemon(max_batch=4, slots=slots)
    try:
        s = d.dealer()
        for r in range(3):
            for c in PAGE_CHANS:
                T.send(s, b"TEXT", c, b"p", r + 1, b"round %d for %s: a line of input" % (r, c))
                rep = recv(s, what="reply")
                check(rep[1] == b"ACK", "%s round %d: %r" % (c, r, rep))
            if kill and r == 1:
                D.restart(d, kill=True)
                s = d.dealer()
        return D.drained_states(d, PAGE_CHANS)
    finally:
        d.close()


def test_page_channels():
    """24 channels on 2 channel slots (state_slots 4) with a snapshot store: no message is
    refused 507 (new channels start on disk with a zero state, input for a channel on disk waits
    there), and the final states equal a run with a slot for every channel, also across a
    kill -9 (channels with input-log records and no snapshot are recovered on disk)."""
    ref = page_run(64)
    D.compare(page_run(4), ref, "24 channels paged through 2 slots", PAGE_CHANS)
    D.compare(page_run(4, kill=True), ref, "24 channels paged through 2 slots, kill -9", PAGE_CHANS)


if __name__ == "__main__":
    T.run_named(globals(), "test_recovery.py")
