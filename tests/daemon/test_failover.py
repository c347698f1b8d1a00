#!/usr/bin/python3
"""Warm-standby failover on the real rwkvd binary.

Usage: test_failover.py NAME (takeover | follow | follow_output | sync | heal | errors).

takeover: a primary streams input over several channels; a standby started with --standby-of
gets a full sync (snapshots + input log) and then the live records; the primary is killed
with SIGKILL mid-stream (messages in flight); the standby must take over within
failover_timeout (+ slack) with epoch 2, the producers resend everything after their last ACK
to the standby's endpoints and a subscriber gets publications from it (CLASS bodies carry
epoch 2). Then the old primary,
restarted with replication.peer pointing at the new one, must refuse to serve (fenced), and
restarted with --standby-of the new primary it must follow it (epoch 2, same LSN); then the
new primary is killed mid-stream too, the old one takes over with epoch 3, the producers
resend to it, and at the end every channel's state equals the reference run that had no
failure, bit for bit (CPU).

follow: no failure; the standby must end with the primary's states bit for bit although
(1) channel c/0 runs two committing generations without a seed (the standby samples nothing:
it applies the primary's commit records in place of the GEN) and (2) a control RESET on the
primary, which is not in the input log, makes the standby restart itself in place (same pid)
and sync again. States are compared as in test_durable.py (SIGTERM snapshots, exported state
bytes).

follow_output: committing generations started by output triggers (event, tokens) run on the
primary only; the standby applies the primary's records at each trigger point and ends with
its states bit for bit.

sync: with replication.sync an ACK waits for the standby: a stopped (SIGSTOP) standby holds
the ACK back until it runs again; without it the ACK comes at once. A standby stopped longer
than two failover timeouts is dropped (the ACK is released) and told to resync, which it does
when it runs again, instead of taking over.

heal: a partition, simulated by SIGSTOP of the primary: the standby takes over (epoch 2); when
the old primary runs again it still believes it is primary, finds the peer's higher epoch
with its running check of replication.peer, steps down (same pid) and follows the new
primary; both end with the same states.

errors: what refuses to start, each with a log line naming the reason: --standby-of an
endpoint nobody answers, --standby-of a primary without replication.bind, replication without
durability, a damaged state_dir/epoch, failover_timeout under two heartbeats.
Every receive has a timeout."""
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_rwkvd as T  # noqa: E402  (skips with 77 when zmq/numpy are missing)
from test_rwkvd import Daemon, Fail, check, next_pub  # noqa: E402
import test_durable as D  # noqa: E402
import test_faults as F  # noqa: E402

HEARTBEAT_MS = 100
FAILOVER_MS = 1000
PROFILE = T.SEV_PROFILE
KW = dict(max_batch=4, slots=16, profiles=PROFILE, default_profile="sev")


def repl_config(d, peer, sync=False):
    return ("replication:\n  bind: ipc://%s/repl.sock\n  peer: \"%s\"\n  heartbeat_interval: %dms\n"
            "  failover_timeout: %dms\n  sync: %s\n" % (d.dir, peer, HEARTBEAT_MS, FAILOVER_MS,
                                                       "true" if sync else "false"))


def configure(d, peer, profiles=True, sync=False):
    """profiles=False: no task profile (only generations publish)."""
    d.write_config(PROFILE if profiles else "", repl_config(d, peer, sync), "sev" if profiles else "",
                   KW["max_batch"], KW["slots"])


def launch(d, *args):
    """Start rwkvd with extra arguments; return once it answers STATUS (or exits)."""
    d.log = open(os.path.join(d.dir, "rwkvd.log"), "a")
    d.proc = subprocess.Popen([T.RWKVD, "-c", d.conf] + list(args), stdout=d.log, stderr=subprocess.STDOUT,
                              env=d.env)
    deadline = time.time() + 20
    while time.time() < deadline:
        if d.proc.poll() is not None:
            return False
        if os.path.exists(d.ctl_ep[6:]):
            try:
                if d.control(b"STATUS")[0] == b"200":
                    return True
            except Fail:
                pass
        time.sleep(0.05)
    raise Fail("rwkvd did not answer STATUS:\n" + d.logtext())


def logtext(d):
    try:
        with open(os.path.join(d.dir, "rwkvd.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def repl(d):
    return d.control_json(b"STATUS")["replication"]


def wait_for(what, fn, timeout):
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v:
            return v
        check(time.time() < deadline, "timed out waiting for " + what)
        time.sleep(0.02)


GEN_COMMIT = b'{"commit":true,"max_tokens":12,"temperature":1.0}'  # no seed: the daemon picks it


def test_follow():
    pri = Daemon(start=False, **KW)
    sby = Daemon(start=False, **KW)
    try:
        configure(pri, "", profiles=False)
        configure(sby, "", profiles=False)
        check(launch(pri), "primary exited at start:\n" + logtext(pri))
        check(launch(sby, "--standby-of", pri.ctl_ep), "standby exited at start:\n" + logtext(sby))
        pid = sby.control_json(b"STATUS")["pid"]
        sub = pri.sub(D.CHANNELS[0])
        s = pri.dealer()
        send = F.acked_sender(s)

        def filler(i):
            for c in D.CHANNELS[1:]:
                send(c, b"TEXT", b"filler %d on %s" % (i, c))

        send(D.CHANNELS[0], b"TEXT", b"Once upon a time")
        send(D.CHANNELS[0], b"GEN", GEN_COMMIT)
        send(D.CHANNELS[0], b"TEXT", b" queued behind the generation")
        filler(1)
        _, end = T.collect_gen(sub, D.CHANNELS[0])
        check(end["committed"] and end["epoch"] == 1, "END %r" % end)
        filler(2)
        code, _ = pri.control(b"RESET", D.CHANNELS[1])
        check(code == b"200", "RESET on the primary answered %r" % code)
        wait_for("the standby to resync", lambda: b"restarting to resync" in logtext(sby).encode(), 10)

        def synced():
            try:
                return repl(sby)["next_lsn"] == repl(pri)["next_lsn"]
            except Fail:  # the standby is restarting
                return False
        wait_for("the standby to come back", synced, 20)
        check(sby.control_json(b"STATUS")["pid"] == pid, "the standby did not restart in place (pid changed)")
        check(logtext(sby).count("full sync from") == 2, "expected two full syncs:\n" + logtext(sby))
        send(D.CHANNELS[0], b"TEXT", b" and later")
        send(D.CHANNELS[0], b"GEN", GEN_COMMIT)
        send(D.CHANNELS[0], b"TEXT", b" the end")
        filler(3)
        T.collect_gen(sub, D.CHANNELS[0])
        wait_for("the standby to catch up", synced, 10)
        want = D.drained_states(pri)  # draining logs nothing more: the standby has every record
        D.compare(D.drained_states(sby), want, "standby vs primary")
    finally:
        pri.close()
        sby.close()


def test_follow_output():
    """Committing generations started by output triggers (test_faults.OUTPUT_PROFILES: trigger
    event on c/0, tokens on c/1) run on the primary only: the standby waits at each trigger point
    for the primary's record and applies its tokens (it feeds no generation: its rwkvd_tokens_total
    equals its input tokens, the primary's is larger), and ends with the primary's states bit
    for bit."""
    pri = Daemon(start=False, **KW)
    sby = Daemon(start=False, **KW)
    try:
        for d, peer in ((pri, ""), (sby, "")):
            d.write_config(F.OUTPUT_PROFILES, repl_config(d, peer), "", KW["max_batch"], KW["slots"])
        check(launch(pri), "primary exited at start:\n" + logtext(pri))
        check(launch(sby, "--standby-of", pri.ctl_ep), "standby exited at start:\n" + logtext(sby))
        s = pri.dealer()
        send = F.acked_sender(s)

        send(D.CHANNELS[0], b"TASK", b"ev")
        send(D.CHANNELS[1], b"TASK", b"tk")
        for i in range(4):
            for c in D.CHANNELS:
                send(c, b"TEXT", b"line %d: the quick brown fox on %s" % (i, c))

        def idle(d):
            return not d.control_json(b"STATUS")["generations"] and not any(
                d.control_json(b"INFO", c)["queued_messages"] for c in D.CHANNELS)
        wait_for("the primary to settle", lambda: idle(pri) and idle(pri) and idle(pri), 30)
        wait_for("the standby to catch up", lambda: repl(sby)["next_lsn"] == repl(pri)["next_lsn"], 10)
        wait_for("the standby to settle", lambda: idle(sby) and idle(sby) and idle(sby), 10)

        def tokens(d):
            m = d.control(b"METRICS")[1].decode()
            return int(T.metric(m, "rwkvd_tokens_total")), int(T.metric(m, "rwkvd_input_tokens_total"))
        pt, pin = tokens(pri)
        st, sin = tokens(sby)
        check(pt > pin, "primary: tokens %d, input tokens %d (its generations feed tokens)" % (pt, pin))
        check(st == sin and sin == pin, "standby: tokens %d, input tokens %d (primary: %d input tokens): it ran "
              "generations of its own" % (st, sin, pin))
        want = D.drained_states(pri)
        D.compare(D.drained_states(sby), want, "standby vs primary, output-triggered committed generations")
    finally:
        pri.close()
        sby.close()


def test_sync():
    for sync in (False, True):
        pri = Daemon(start=False, **KW)
        sby = Daemon(start=False, **KW)
        try:
            configure(pri, "", sync=sync)
            configure(sby, "")
            check(launch(pri), "primary exited at start:\n" + logtext(pri))
            check(launch(sby, "--standby-of", pri.ctl_ep), "standby exited at start:\n" + logtext(sby))
            s = pri.dealer()
            T.send(s, b"TEXT", b"c/0", b"p", 1, b"hello")
            T.expect_reply(s, "ACK", 1)
            sby.proc.send_signal(signal.SIGSTOP)
            T.send(s, b"TEXT", b"c/0", b"p", 2, b"while the standby is stopped")
            if not sync:
                T.expect_reply(s, "ACK", 2)
                sby.proc.send_signal(signal.SIGCONT)
                continue
            check(not s.poll(500), "sync: an ACK came while the standby was stopped")
            sby.proc.send_signal(signal.SIGCONT)
            r = T.recv(s, 3000, "the ACK after the standby resumed")
            check(r[1] == b"ACK" and r[4] == b"2", "reply %r" % r)
            # stopped past two failover timeouts: dropped (the ACK goes), told to resync
            sby.proc.send_signal(signal.SIGSTOP)
            T.send(s, b"TEXT", b"c/0", b"p", 3, b"the standby is gone for good?")
            r = T.recv(s, 4 * FAILOVER_MS, "the ACK once the silent standby was dropped")
            check(r[1] == b"ACK" and r[4] == b"3", "reply %r" % r)
            check(repl(pri)["standbys"] == 0, "the silent standby is still counted")
            sby.proc.send_signal(signal.SIGCONT)
            try:
                wait_for("the standby to resync", lambda: "restarting to resync" in logtext(sby), 5)
            except Fail as e:
                raise Fail("%s; standby log:\n%s" % (e, logtext(sby)))

            def back():
                try:
                    return repl(sby)["next_lsn"] == repl(pri)["next_lsn"] and repl(pri)["standbys"] == 1
                except Fail:
                    return False
            wait_for("the standby to follow again", back, 15)
            check("took over" not in logtext(sby), "the stalled standby took over:\n" + logtext(sby))
            check(repl(sby)["role"] == "standby", "role after the resync %r" % repl(sby))
        finally:
            if sby.proc and sby.proc.poll() is None:
                sby.proc.send_signal(signal.SIGCONT)
            pri.close()
            sby.close()


def test_heal():
    pri = Daemon(start=False, **KW)
    sby = Daemon(start=False, **KW)
    try:
        configure(pri, sby.ctl_ep)
        configure(sby, pri.ctl_ep)
        check(launch(pri), "primary exited at start:\n" + logtext(pri))
        check(launch(sby, "--standby-of", pri.ctl_ep), "standby exited at start:\n" + logtext(sby))
        pid = pri.control_json(b"STATUS")["pid"]
        msgs = D.messages(5, 120)
        p = D.Producer(msgs)
        p.connect(pri)
        p.pump(40)
        pri.proc.send_signal(signal.SIGSTOP)  # the partition
        wait_for("the takeover", lambda: repl(sby)["role"] == "primary", FAILOVER_MS / 1000 + 5)
        p.connect(sby)
        p.pump(40)
        pri.proc.send_signal(signal.SIGCONT)  # the partition heals: two primaries, for a moment

        def following():
            try:
                r = repl(pri)
                return r["role"] == "standby" and r["following"] == sby.ctl_ep and \
                    r["next_lsn"] == repl(sby)["next_lsn"]
            except Fail:
                return False
        wait_for("the old primary to step down and follow", following, FAILOVER_MS / 1000 + 10)
        check(repl(pri)["epoch"] == 2, "epoch of the old primary %r" % repl(pri))
        check(pri.control_json(b"STATUS")["pid"] == pid, "the old primary did not step down in place")
        check("stepping down" in logtext(pri), "no fencing line in the log:\n" + logtext(pri))
        while p.pump(32):
            pass
        wait_for("the old primary to catch up", following, 10)
        want = D.drained_states(sby)
        D.compare(D.drained_states(pri), want, "old primary (now standby) vs new primary")
    finally:
        if pri.proc and pri.proc.poll() is None:
            pri.proc.send_signal(signal.SIGCONT)
        pri.close()
        sby.close()


def test_errors():
    plain = Daemon(**KW)  # a primary without a replication stream
    d = Daemon(start=False, **KW)
    try:
        def refused(args, want, what):
            d.log = open(os.path.join(d.dir, "rwkvd.log"), "w")
            t0 = time.time()
            rc = subprocess.run([T.RWKVD, "-c", d.conf] + args, stdout=d.log, stderr=subprocess.STDOUT,
                                env=d.env, timeout=30).returncode
            d.log.close()
            log = logtext(d)
            check(rc != 0, "%s: exit status 0:\n%s" % (what, log))
            check(want in log, "%s: the log does not say %r:\n%s" % (what, want, log))
            check(not os.path.exists(d.ingest_ep[6:]), "%s: ingest bound" % what)
            return time.time() - t0

        configure(d, "")
        dt = refused(["--standby-of", "ipc://%s/nobody.sock" % d.dir], "no answer to STATUS", "unreachable primary")
        check(dt < 15, "unreachable primary: gave up only after %.1f s" % dt)
        refused(["--standby-of", plain.ctl_ep], "without a replication stream (replication.bind)",
                "primary without a stream")
        d.write_config(PROFILE, "durability:\n  enabled: false\n" + repl_config(d, ""), "sev", 4, 16)
        with open(d.conf) as f:
            text = f.read().replace("durability:\n  fsync: no\n", "", 1)
        with open(d.conf, "w") as f:
            f.write(text)
        refused([], "replication needs durability", "no durability")
        configure(d, "")
        os.makedirs(os.path.join(d.dir, "state"), exist_ok=True)
        with open(os.path.join(d.dir, "state", "epoch"), "w") as f:
            f.write("two\n")
        refused([], "epoch: not a positive decimal number", "damaged epoch file")
        os.unlink(os.path.join(d.dir, "state", "epoch"))
        d.write_config(PROFILE, repl_config(d, "").replace("failover_timeout: %dms" % FAILOVER_MS,
                                                           "failover_timeout: 150ms"), "sev", 4, 16)
        refused([], "must be at least two heartbeat_interval", "failover_timeout too short")
    finally:
        plain.close()
        d.close()


def test_takeover():
    seed = int(os.environ.get("RWKVD_FAILOVER_SEED", "11"))
    rng = random.Random(seed)
    msgs = D.messages(seed, 320)
    ref = D.reference(msgs, **KW)
    pri = Daemon(start=False, **KW)
    sby = Daemon(start=False, **KW)
    old = None
    try:
        configure(pri, sby.ctl_ep)  # the standby is not up yet: the peer check times out, it serves
        configure(sby, pri.ctl_ep)
        check(launch(pri), "primary exited at start:\n" + logtext(pri))
        r = repl(pri)
        check(r["role"] == "primary" and r["epoch"] == 1 and r["endpoint"].startswith("ipc://"),
              "primary replication status %r" % r)
        p = D.Producer(msgs)
        p.connect(pri)
        p.pump(40)
        pri.control(b"SNAPSHOT")  # the full sync then carries snapshots and a log tail
        p.pump(20)
        check(launch(sby, "--standby-of", pri.ctl_ep), "standby exited at start:\n" + logtext(sby))
        r = repl(sby)
        check(r["role"] == "standby" and r["epoch"] == 1 and r["following"] == pri.ctl_ep,
              "standby replication status %r" % r)
        check(b"full sync" in open(os.path.join(sby.dir, "rwkvd.log"), "rb").read(), "no full sync logged")
        code, _ = sby.control(b"RESET", D.CHANNELS[0])
        check(code == b"409", "RESET on a standby answered %r, expected 409" % code)
        sub = sby.sub()  # connects now; the standby binds its publish endpoint on takeover
        for _ in range(8):  # the live stream
            p.pump(rng.randint(5, 15))
        wait_for("the standby to catch up",
                 lambda: repl(sby)["next_lsn"] == repl(pri)["next_lsn"], 10)
        check(repl(pri)["standbys"] == 1, "primary counts %r standbys" % repl(pri)["standbys"])
        p.pump(rng.randint(5, 15))
        p.pump(20, wait=False)  # in flight when the primary dies
        time.sleep(0.02)
        pri.proc.kill()
        pri.proc.wait()
        t_kill = time.time()
        wait_for("the standby to take over", lambda: repl(sby)["role"] == "primary", FAILOVER_MS / 1000 + 5)
        took = time.time() - t_kill
        r = repl(sby)
        check(r["epoch"] == 2, "epoch after takeover %r" % r)
        print("takeover %.2f s after SIGKILL (failover_timeout %d ms)" % (took, FAILOVER_MS))
        # silence starts at the last heartbeat before the kill
        check(took >= (FAILOVER_MS - 2 * HEARTBEAT_MS) / 1000, "took over after %.2f s, before failover_timeout" % took)
        check(took < FAILOVER_MS / 1000 + 3, "took over only after %.2f s" % took)
        # the subscriber's reconnect reaches the new publish endpoint (slow joiner)
        wait_for("the subscriber to reach the new primary",
                 lambda: b"rwkvd_subscriptions 1" in sby.control(b"METRICS")[1], 5)
        p.connect(sby)  # resend everything after the last ACK; duplicates come back as DUP
        p.pump(40)
        pub = next_pub(sub, kinds=(b"CLASS",))
        check(pub[0] in D.CHANNELS, "publication from the new primary on %r" % pub[0])
        body = T.json.loads(pub[6])
        check(body.get("epoch") == 2 and body.get("top") in ("ok", "bad", "meh"),
              "CLASS body from the new primary %r" % body)
        # fencing: the old primary restarted with peer = the new primary must not serve
        old = Daemon(start=False, **KW)
        old.dir, old.conf = pri.dir, pri.conf
        old.ingest_ep, old.pub_ep, old.ctl_ep = pri.ingest_ep, pri.pub_ep, pri.ctl_ep
        for ep in (old.ingest_ep, old.pub_ep, old.ctl_ep):
            try:
                os.unlink(ep[6:])
            except OSError:
                pass
        configure(old, sby.ctl_ep)
        check(not launch(old), "the old primary serves beside the new one (not fenced)")
        check(old.proc.returncode != 0, "fenced primary exit status %r" % old.proc.returncode)
        log = logtext(old)
        check("fencing" in log and "epoch 2" in log, "fencing not explained in the log:\n" + log)
        check(not os.path.exists(old.ingest_ep[6:]), "the fenced primary bound its ingest endpoint")
        # ... and as a standby of the new primary it follows it
        check(launch(old, "--standby-of", sby.ctl_ep), "old primary as standby exited:\n" + logtext(old))
        r = repl(old)
        check(r["role"] == "standby" and r["epoch"] == 2, "old primary as standby: %r" % r)
        wait_for("the old primary to follow", lambda: repl(old)["next_lsn"] == repl(sby)["next_lsn"], 10)
        # second failure: the new primary dies mid-stream, the old one takes over with epoch 3
        p.pump(10)
        p.pump(10, wait=False)
        check(len(p.pending()) > 30, "too little input left for the second failover")
        sby.proc.kill()
        sby.proc.wait()
        wait_for("the second takeover", lambda: repl(old)["role"] == "primary", FAILOVER_MS / 1000 + 5)
        check(repl(old)["epoch"] == 3, "epoch after the second takeover %r" % repl(old))
        p.connect(old)
        while p.pump(32):
            pass
        D.compare(D.drained_states(old), ref, "after two failovers (seed %d)" % seed)
    finally:
        if old:
            old.stop()
        pri.close()
        sby.close()


if __name__ == "__main__":
    T.run_named(globals(), "test_failover.py")
