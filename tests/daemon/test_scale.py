#!/usr/bin/env python3
"""rwkvd at scale: 10,000 channels x 256 tokens through the real daemon.

Usage: test_scale.py [N_CHANNELS]   (default 10000)

One producer sends every channel's 256 token ids as 16 TOKENS messages of 16, interleaved
across channels (message k of every channel, then k + 1), so every job of max_batch 1024
rows mixes about a thousand channels, and the scheduler's ready list, waiting list and two
jobs in flight are all exercised. It keeps at most 400 messages unanswered (rwkvd's ROUTER
drops a reply its pipe has no room for; the pipe's high-water mark is 1000, but the sender
learns of what was read only every 500 messages). Checked:
  - every message is answered ACK, with its own seq;
  - every channel's tokens_seen is 256 and nothing stays queued (CHANNELS, all pages);
  - for 50 channels drawn with a fixed seed, the EXPORTed state (payload bytes, tokens_seen,
    held token) equals bit for bit that of a fresh channel fed the same ids alone, with
    nothing else queued: interleaving with 9,999 other channels changed nothing.
The model is RWKVD_MICRO_MODEL (1 layer, 64 wide, vocabulary 256) when set, else
RWKVD_TEST_MODEL. Durability is on (fsync no, no background snapshots); the daemon is
killed at the end instead of taking 10,000 shutdown snapshots.
"""
import os
import random
import struct
import sys
import time

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_rwkvd as T  # noqa: E402
from test_rwkvd import Daemon, Fail, check  # noqa: E402

TOKENS, CHUNK, WINDOW, SAMPLE = 256, 16, 400, 50


def ids_of(c):
    """Channel c's token ids: distinct per channel, deterministic."""
    rng = random.Random(1000003 * c + 17)
    return [rng.randrange(256) for _ in range(TOKENS)]


def pack(ids):
    return struct.pack("<%dI" % len(ids), *ids)


def image_state(b, what):
    """(payload bytes, tokens_seen, $held) of a snapshot image (daemon/FORMATS.md §1)."""
    check(b[:8] == b"RWKVSNAP", "%s: not a snapshot image" % what)
    header_len, = struct.unpack_from("<I", b, 12)
    n_prod, = struct.unpack_from("<I", b, 52)
    tokens_seen, = struct.unpack_from("<Q", b, 56)
    payload_len, = struct.unpack_from("<Q", b, 80)
    name_len, = struct.unpack_from("<H", b, 88)
    off, held = 90 + name_len, None
    for _ in range(n_prod):
        n, = struct.unpack_from("<H", b, off)
        pid = b[off + 2:off + 2 + n]
        seq, = struct.unpack_from("<Q", b, off + 2 + n)
        off += 10 + n
        if pid == b"$held":
            held = seq
    return b[header_len:header_len + payload_len], tokens_seen, held


def export(d, name):
    s = d.ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(d.ctl_ep)
    s.send_multipart([T.SIG, b"EXPORT", name])
    r = T.recv(s, 30000, "EXPORT %r" % name)
    s.close()
    check(r[1] == b"200" and len(r) == 4, "EXPORT %r answered %r" % (name, r[1:3]))
    return r[3]


def channels(d, prefix):
    """Every channel under prefix: {name: (tokens_seen, queued_tokens)}, all pages."""
    out, after = {}, b""
    while True:
        j = d.control_json(b"CHANNELS", prefix, after)
        for c in j["channels"]:
            out[c["name"].encode()] = (c["tokens_seen"], c["queued_tokens"])
        if not j["more"]:
            return out
        after = j["channels"][-1]["name"].encode()


def feed(d, msgs, what):
    """Send (channel, seq, payload) TOKENS messages, at most WINDOW unanswered; every reply
    must be the ACK of its message."""
    s = d.dealer()
    s.setsockopt(zmq.RCVHWM, 0)
    pending, acks, i = {}, 0, 0
    while acks < len(msgs):
        while i < len(msgs) and len(pending) < WINDOW:
            c, seq, payload = msgs[i]
            T.send(s, b"TOKENS", c, b"p", seq, payload)
            pending[(c, seq)] = True
            i += 1
        r = T.recv(s, 30000, "%s: a reply (%d of %d answered)" % (what, acks, len(msgs)))
        check(len(r) >= 5 and r[1] == b"ACK", "%s: reply %r" % (what, r[:7]))
        key = (r[2], int(r[4]))
        check(pending.pop(key, None), "%s: an ACK for %r, which is not in flight" % (what, key))
        acks += 1
    s.close()
    return acks


def wait_applied(d, prefix, n, what, timeout=120):
    deadline, last, got = time.time() + timeout, None, {}
    while time.time() < deadline:
        got = channels(d, prefix)
        done = sum(1 for ts, q in got.values() if ts == TOKENS and q == 0)
        if len(got) == n and done == n:
            return got
        if done != last:
            last, deadline = done, time.time() + timeout
        time.sleep(0.2 if n > 100 else 0.01)
    bad = [(c, v) for c, v in got.items() if v != (TOKENS, 0)][:5]
    raise Fail("%s: %d of %d channels applied all %d tokens; e.g. %r" % (what, last or 0, n, TOKENS, bad))


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    T.MODEL = os.environ.get("RWKVD_MICRO_MODEL") or T.MODEL
    d = Daemon(max_batch=1024, slots=n + SAMPLE + 8,
               extra="limits:\n  max_channels: %d\n  max_queue_tokens: %d\n" % (n + SAMPLE + 8, TOKENS + CHUNK),
               durability="durability:\n  fsync: no\n  snapshot_interval: 0\n  snapshot_every_tokens: 0\n")
    try:
        names = [b"s/%05d" % c for c in range(n)]
        chunks = [[pack(ids_of(c)[k:k + CHUNK]) for k in range(0, TOKENS, CHUNK)] for c in range(n)]
        msgs = [(names[c], k + 1, chunks[c][k]) for k in range(TOKENS // CHUNK) for c in range(n)]
        t0 = time.time()
        acks = feed(d, msgs, "interleaved")
        got = wait_applied(d, b"s/", n, "interleaved")
        dt = time.time() - t0
        st = d.control_json(b"STATUS")
        print("%d channels x %d tokens: %d messages ACKed, all applied in %.1f s (%.0f tokens/s); "
              "longest loop iteration %.1f ms" % (n, TOKENS, acks, dt, n * TOKENS / dt,
                                                   st["loop"]["iteration_max_s"] * 1e3))
        check(len(got) == n, "CHANNELS lists %d channels, not %d" % (len(got), n))
        # a sample, each against the same ids fed to a fresh channel alone
        sample = random.Random(7).sample(range(n), min(SAMPLE, n))
        for c in sample:
            alone = b"alone/%05d" % c
            feed(d, [(alone, k + 1, chunks[c][k]) for k in range(TOKENS // CHUNK)], "alone %d" % c)
            wait_applied(d, alone, 1, "alone %d" % c, timeout=30)
            a = image_state(export(d, names[c]), names[c])
            b = image_state(export(d, alone), alone)
            check(a[1] == b[1] == TOKENS, "%r: tokens_seen %d, alone %d" % (names[c], a[1], b[1]))
            check(a[2] == b[2] == ids_of(c)[-1] + 1, "%r: held %r, alone %r" % (names[c], a[2], b[2]))
            check(a[0] == b[0], "%r: state differs from the same ids fed alone (%d bytes)" % (names[c], len(a[0])))
        print("%d sampled channels equal their runs alone, bit for bit" % len(sample))
    finally:
        if d.proc and d.proc.poll() is None:  # no 10,000 shutdown snapshots: kill -9
            d.proc.kill()
            d.proc.wait()
        d.close()


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        print("FAIL scale:", e)
        sys.exit(1)
    print("ok scale")
