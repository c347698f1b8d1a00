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


if __name__ == "__main__":
    T.run_named(globals(), "test_recovery.py")
