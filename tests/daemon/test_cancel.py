#!/usr/bin/python3
"""CANCEL (PROTOCOL.md §5.2) through the real rwkvd binary: it ends the channel's running
generation and every GEN still queued, and a cancelled generation stays cancelled across a
kill -9 restart (it never runs again, so it never commits).

Usage: test_cancel.py NAME   (NAME = one of the test_* functions below, without the prefix)
Environment as test_rwkvd.py.

  running_restart   a committing GEN cancelled while it runs; input after it; kill -9:
                    the restarted channel has the same tokens_seen and state (before the
                    fix the GEN ran again at recovery and committed its 3000 tokens)
  queued            a second GEN queued behind a running committing one gets its END
                    (cancelled, 0 tokens) at once; the TEXT behind both is applied; nothing
                    runs again after kill -9
  triggered         a committing generation started by an event trigger (continue
                    profile), cancelled while it runs, does not run again after kill -9
"""
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_rwkvd as T  # noqa: E402  (skips with 77 when zmq/numpy are missing)
from test_rwkvd import Daemon, check, expect_reply, next_pub, send  # noqa: E402

STATE_BYTES = 2 * (2 * 64 + 64 * 64) * 4

EVENT_COMMIT = """    ev:
      kind: continue
      trigger: event
      prompt_suffix: " =>"
      generate: {max_tokens: 3000, temperature: 1.0, seed: 3, commit: true}
"""


def wait_pub(sub, kind, channel=None, timeout=20):
    deadline = time.time() + timeout
    while True:
        check(time.time() < deadline, "no %r publication" % kind)
        m = next_pub(sub)
        if m[2] == kind and (channel is None or m[0] == channel):
            return m


def idle(d, c, timeout=20):
    """INFO of c once nothing is queued and no generation runs (polled)."""
    deadline = time.time() + timeout
    while True:
        i = d.control_json(b"INFO", c)
        st = d.control_json(b"STATUS")
        if i["queued_messages"] == 0 and st.get("generations", 0) == 0:
            return i
        check(time.time() < deadline, "channel %r never became idle: %r" % (c, i))
        time.sleep(0.05)


def export_state(d, c):
    """The state of an EXPORT image: the octets before its checksum (the test model: 2 layers, C 64, one
    head of 64, fp32), without the header, which carries times and LSNs."""
    s = d.ctx.socket(T.zmq.REQ)
    s.setsockopt(T.zmq.LINGER, 0)
    s.connect(d.ctl_ep)
    s.send_multipart([T.SIG, b"EXPORT", c])
    r = T.recv(s, what="EXPORT reply")
    s.close()
    check(r[1] == b"200" and len(r) == 4, "EXPORT answered %r" % (r[1:3],))
    return r[3][-STATE_BYTES - 4:-4]  # the image ends with its CRC-32C


def restart_same(d, c, before):
    state = export_state(d, c)
    d.stop(signal.SIGKILL)
    d.start()
    after = idle(d, c)
    check(after["tokens_seen"] == before["tokens_seen"],
          "tokens_seen %d after kill -9 and restart, %d before: the cancelled generation ran again"
          % (after["tokens_seen"], before["tokens_seen"]))
    check(export_state(d, c) == state, "the exported state differs after the restart")


def test_running_restart():
    d = Daemon()
    try:
        s, sub = d.dealer(), d.sub(b"c/")
        send(s, b"TEXT", b"c/x", b"p", 1, b"hello world")
        expect_reply(s, "ACK", 1)
        send(s, b"GEN", b"c/x", b"p", 2, b'{"commit":true,"max_tokens":3000,"seed":1}')
        expect_reply(s, "ACK", 2)
        wait_pub(sub, b"TEXT", b"c/x")
        send(s, b"CANCEL", b"c/x", b"p", 3)
        expect_reply(s, "ACK", 3)
        end = json.loads(wait_pub(sub, b"END", b"c/x")[6])
        check(end["reason"] == "cancelled" and not end["committed"], "END %r" % end)
        send(s, b"TEXT", b"c/x", b"p", 4, b"after")
        expect_reply(s, "ACK", 4)
        before = idle(d, b"c/x")
        check(before["tokens_seen"] == len(b"hello world\nafter\n"), "tokens_seen %r" % before["tokens_seen"])
        restart_same(d, b"c/x", before)
    finally:
        d.close()


def test_queued():
    d = Daemon()
    try:
        s, sub = d.dealer(), d.sub(b"c/")
        send(s, b"TEXT", b"c/q", b"p", 1, b"hello")
        expect_reply(s, "ACK", 1)
        send(s, b"GEN", b"c/q", b"p", 2, b'{"commit":true,"max_tokens":3000,"seed":1}')
        expect_reply(s, "ACK", 2)
        wait_pub(sub, b"TEXT", b"c/q")
        send(s, b"GEN", b"c/q", b"p", 3, b'{"commit":true,"max_tokens":3000,"seed":2}')
        expect_reply(s, "ACK", 3)
        send(s, b"TEXT", b"c/q", b"p", 4, b"behind")
        expect_reply(s, "ACK", 4)
        send(s, b"CANCEL", b"c/q", b"p", 5)
        expect_reply(s, "ACK", 5)
        ends = {}
        while len(ends) < 2:
            m = wait_pub(sub, b"END", b"c/q")
            ends[int(m[4])] = json.loads(m[6])
        check(ends[2]["reason"] == "cancelled" and ends[2]["n_tokens"] > 0, "running GEN's END %r" % ends[2])
        check(ends[3]["reason"] == "cancelled" and ends[3]["n_tokens"] == 0 and ends[3]["seed"] == 2,
              "queued GEN's END %r" % ends[3])
        before = idle(d, b"c/q")
        check(before["tokens_seen"] == len(b"hello\nbehind\n"), "tokens_seen %r" % before["tokens_seen"])
        restart_same(d, b"c/q", before)
    finally:
        d.close()


def test_triggered():
    d = Daemon(profiles=EVENT_COMMIT, default_profile="ev")
    try:
        s, sub = d.dealer(), d.sub(b"c/")
        send(s, b"TEXT", b"c/t", b"p", 1, b"an event")
        expect_reply(s, "ACK", 1)
        wait_pub(sub, b"TEXT", b"c/t")
        send(s, b"CANCEL", b"c/t", b"p", 2)
        expect_reply(s, "ACK", 2)
        end = json.loads(wait_pub(sub, b"END", b"c/t")[6])
        check(end["reason"] == "cancelled" and not end["committed"], "END %r" % end)
        before = idle(d, b"c/t")
        restart_same(d, b"c/t", before)
    finally:
        d.close()


if __name__ == "__main__":
    T.run_named(globals(), "test_cancel.py")
