#!/usr/bin/python3
"""The endless-stream health guard (daemon/health.h) through the real rwkvd binary.

Usage: test_health.py NAME   (NAME = one of the test_* functions below, without the prefix)
Environment as test_rwkvd.py. The fault hook RWKVD_TEST_POISON=CHANNEL@N sets one value of
CHANNEL's state to NaN inside the engine before the Nth job that advances it.

  quarantine   a channel whose state goes non-finite gets ERROR 512 instead of a CLASS made
               from NaN, restarts from a zero state, and is counted in METRICS; another
               channel fed in the same jobs keeps exactly the probabilities of a clean run;
               the reset survives a SIGTERM restart
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_rwkvd as T  # noqa: E402  (skips with 77 when zmq/numpy are missing)
from test_rwkvd import (SEV_LABELS, SEV_PROFILE, SEV_SUFFIX, Daemon, b, check, expect_reply, metric,  # noqa: E402
                        next_pub, ref_label_probs, send)

np = T.np


def class_or_error(sub, channel):
    m = next_pub(sub, kinds=(b"CLASS", b"ERROR"))
    check(m[0] == channel, "publication on %r, expected %r: %r" % (m[0], channel, m[:4]))
    return m


def check_class(m, prefix, what):
    check(m[2] == b"CLASS", "%s: expected CLASS, got %r" % (what, m[:7]))
    check(int(m[5]) == len(prefix), "%s: tokens_seen %r, expected %d" % (what, m[5], len(prefix)))
    probs = np.array(json.loads(m[6])["probs"])
    check(np.all(np.isfinite(probs)), "%s: probs %r" % (what, probs))
    ref = ref_label_probs(prefix + SEV_SUFFIX, SEV_LABELS)
    check(np.max(np.abs(probs - ref)) < 1e-5, "%s: probs %r vs a clean run's %r" % (what, probs, ref))


def test_quarantine():
    d = Daemon(profiles=SEV_PROFILE, default_profile="sev", env={"RWKVD_TEST_POISON": "ch/bad@2"})
    try:
        sub = d.sub(b"ch/")
        s = d.dealer()
        events = ["first event", "second event", "third event"]
        good, bad = [], []
        seq = 0
        for i, ev in enumerate(events):
            for name in (b"ch/good", b"ch/bad"):
                seq += 1
                send(s, b"TEXT", name, b"p", seq, ev.encode())
                expect_reply(s, "ACK", seq)
                m = class_or_error(sub, name)
                toks = b(ev) + b("\n")
                if name == b"ch/good":
                    good += toks
                    check_class(m, good, "good, event %d" % (i + 1))
                elif i == 1:  # the poisoned job
                    check(m[2] == b"ERROR" and m[6] == b"512", "bad, event 2: expected ERROR 512, got %r" % (m[:8],))
                    check(b"non-finite" in m[7], "ERROR text %r" % m[7])
                    bad = []  # the state restarts from zero
                else:
                    bad += toks
                    check_class(m, bad, "bad, event %d" % (i + 1))
        text = d.control(b"METRICS")[1].decode()
        check(metric(text, "rwkvd_channels_quarantined_total") == 1, "quarantined metric:\n" + text)
        check("non-finite" in d.logtext() and "quarantined" in d.logtext(), "log:\n" + d.logtext())
        info = d.control_json(b"INFO", b"ch/bad")
        check(info["tokens_seen"] == len(bad), "INFO tokens_seen %r, expected %d" % (info["tokens_seen"], len(bad)))
        # the reset is part of the channel's durable state: a clean restart keeps it
        check(d.stop() == 0, "rwkvd exit status after SIGTERM")
        d.env.pop("RWKVD_TEST_POISON")
        d.start()
        sub = d.sub(b"ch/")
        s = d.dealer()
        for name, prefix in ((b"ch/good", good), (b"ch/bad", bad)):
            seq += 1
            send(s, b"TEXT", name, b"p", seq, b"after restart")
            expect_reply(s, "ACK", seq)
            prefix += b("after restart") + b("\n")
            check_class(class_or_error(sub, name), prefix, "%s after the restart" % name.decode())
    finally:
        d.close()


if __name__ == "__main__":
    T.run_named(globals(), "test_health.py")
