#!/usr/bin/python3
"""PROTOCOL.md conformance of the real rwkvd binary over real sockets: the points where a
client written from the documents alone found the daemon differing from them.

Usage: test_protocol.py NAME   (NAME = one of the test_* functions below, without the prefix)
Environment as test_rwkvd.py. Every receive has a timeout; a failure raises and exits 1.

  subscribers     §9.6: a subscriber that never reads costs drops toward itself only; a
                  reading subscriber gets every publication, and the drops are counted
  channel_names   §4.4/§14: channel names of 1..128 octets on INGEST and CONTROL (INFO,
                  EXPORT, IMPORT, FORK); 129 is 422; the config has no key for it
  drop_error      §9.5: control DROP publishes ERROR on the channel's topic, after an END
                  (cancelled) for each GEN it discards
  ingest_pull     §8.4: PUSH producers on the INGEST-PULL endpoint: applied like DEALER input,
                  no replies, rejections published as ERROR, DUPs counted, SYNC ignored, and
                  a full channel holds the socket instead of dropping
  size_first      §12: the message size is checked before the frame count (413, not 400)
  tokens_total    §10.3: STATUS tokens_total equals the sum of the channels' tokens_seen
  export_meta     FORMATS.md §1: EXPORT of a disk-tier channel carries no daemon-internal
                  producer entries ($next, $partial, $pos)
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
from test_rwkvd import SIG, Daemon, Fail, check, expect_reply, metric, next_pub, recv, send  # noqa: E402

zmq = T.zmq
np = T.np


def wait_drained(d, chans, timeout=20):
    deadline = time.time() + timeout
    while True:
        busy = [c for c in chans if d.control_json(b"INFO", c)["queued_messages"] > 0]
        if not busy:
            return
        check(time.time() < deadline, "queues not drained: %r" % busy)
        time.sleep(0.02)


def control_raw(d, *frames):
    s = d.ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(d.ctl_ep)
    s.send_multipart([SIG] + list(frames))
    r = recv(s, what="control reply to %r" % (frames[:1],))
    s.close()
    check(r[0] == SIG, "control reply %r" % r[:3])
    return r[1], r[2], (r[3] if len(r) > 3 else None)


def image_producers(blob):
    """The producer ids of a snapshot image (FORMATS.md §1)."""
    check(blob[:8] == b"RWKVSNAP", "not a snapshot image")
    n_prod, = struct.unpack_from("<I", blob, 52)
    name_len, = struct.unpack_from("<H", blob, 88)
    off = 90 + name_len
    ids = []
    for _ in range(n_prod):
        n, = struct.unpack_from("<H", blob, off)
        ids.append(blob[off + 2:off + 2 + n])
        off += 10 + n
    return ids


# ---- tests ------------------------------------------------------------------------------

def test_subscribers():
    """Two subscribers of everything: A never reads (tiny queues), B reads. A long generation
    must reach B whole (every TEXT index and the END), with the drops toward A counted."""
    d = Daemon()
    try:
        stalled = d.ctx.socket(zmq.SUB)
        stalled.setsockopt(zmq.LINGER, 0)
        stalled.setsockopt(zmq.RCVHWM, 1)
        stalled.setsockopt(zmq.RCVBUF, 4096)
        stalled.connect(d.pub_ep)
        stalled.setsockopt(zmq.SUBSCRIBE, b"")
        reader = d.ctx.socket(zmq.SUB)
        reader.setsockopt(zmq.LINGER, 0)
        reader.setsockopt(zmq.RCVHWM, 0)  # no limit here: only the daemon side may drop
        reader.connect(d.pub_ep)
        reader.setsockopt(zmq.SUBSCRIBE, b"")
        time.sleep(0.3)
        s = d.dealer()
        send(s, b"TEXT", b"flood", b"p", 1, b"hello")
        expect_reply(s, "ACK", 1)
        send(s, b"GEN", b"flood", b"p", 2, b'{"max_tokens":20000,"seed":1}')
        expect_reply(s, "ACK", 2)
        indexes = []
        end = None
        deadline = time.time() + 90
        while end is None:
            check(time.time() < deadline, "no END within 90 s; %d pieces received" % len(indexes))
            m = next_pub(reader, timeout_ms=10000)
            if m[2] == b"TEXT":
                indexes.append(int(m[6]))
            elif m[2] == b"END":
                end = json.loads(m[6])
        check(end["n_tokens"] == 20000 and end["reason"] == "max_tokens", "END %r" % end)
        check(indexes == list(range(len(indexes))),
              "the reading subscriber lost pieces: %d received, first gap after index %d" %
              (len(indexes), next((i for i, x in enumerate(indexes) if x != i), len(indexes))))
        met = d.control(b"METRICS")[1].decode()
        dropped = metric(met, "rwkvd_publish_dropped_total")
        sent = metric(met, 'rwkvd_publish_messages_total{kind="TEXT"}')
        check(sent == len(indexes), "TEXT sent %d, the reader received %d" % (sent, len(indexes)))
        check(dropped > 0, "drops toward the stalled subscriber are not counted:\n" + met)
        check(d.proc.poll() is None, "rwkvd alive")
    finally:
        d.close()


def test_channel_names():
    """Names of 1..128 octets everywhere; 129 is 422 on INGEST and CONTROL."""
    d = Daemon()
    try:
        s = d.dealer()
        long_names = [b"n" * 65, b"a/" + b"b" * 98, b"c" * 128]
        for i, ch in enumerate(long_names, 1):
            send(s, b"TEXT", ch, b"p", i, b"some text")
            expect_reply(s, "ACK", i)
        wait_drained(d, long_names)
        for ch in long_names:
            info = d.control_json(b"INFO", ch)
            check(info["name"] == ch.decode() and info["tokens_seen"] == 10, "INFO %r" % info)
        names = [c["name"] for c in d.control_json(b"CHANNELS")["channels"]]
        check(sorted(names) == sorted(c.decode() for c in long_names), "CHANNELS %r" % names)
        code, body, blob = control_raw(d, b"EXPORT", long_names[2])
        check(code == b"200" and blob, "EXPORT of a 128-octet name: %r %r" % (code, body))
        target = b"d" * 128
        code, body, _ = control_raw(d, b"IMPORT", target, blob)
        check(code == b"200", "IMPORT under a 128-octet name: %r %r" % (code, body))
        check(d.control_json(b"INFO", target)["tokens_seen"] == 10, "imported channel")
        fork = b"e" * 127 + b"f"
        code, body, _ = control_raw(d, b"FORK", long_names[0], fork)
        check(code == b"200", "FORK to a 128-octet name: %r %r" % (code, body))
        too_long = b"x" * 129
        send(s, b"TEXT", too_long, b"p", 1, b"x")
        r = expect_reply(s, "ERROR", code=422)
        check(b"128" in r[6], "422 names the limit: %r" % r)
        for frames in ([b"INFO", too_long], [b"IMPORT", too_long, blob], [b"FORK", long_names[0], too_long]):
            code, body, _ = control_raw(d, *frames)
            check(code == b"422", "%s of a 129-octet name: %r %r" % (frames[0], code, body))
    finally:
        d.close()
    # the limit is not configurable: the old key is refused with the reason
    d = Daemon(start=False, extra="limits:\n  max_channel_name_bytes: 64")
    try:
        r = subprocess.run([T.RWKVD, "--check-config", "-c", d.conf], capture_output=True, text=True)
        check(r.returncode == 1 and "max_channel_name_bytes" in r.stderr and "128" in r.stderr,
              "--check-config with limits.max_channel_name_bytes: %r" % (r,))
    finally:
        d.close()


def test_drop_error():
    """DROP publishes ERROR for the channel: idle, and with queued messages (each queued GEN
    gets its END, cancelled, before the ERROR)."""
    d = Daemon(env={"RWKVD_TEST_STEP_DELAY_MS": "50"})
    try:
        sub = d.sub(b"")
        s = d.dealer()
        send(s, b"TEXT", b"idle", b"p", 1, b"abc")
        expect_reply(s, "ACK", 1)
        wait_drained(d, [b"idle"])
        seen = d.control_json(b"INFO", b"idle")["tokens_seen"]
        r = d.control_json(b"DROP", b"idle")
        check(r["dropped_messages"] == 0, "DROP %r" % r)
        m = next_pub(sub, kinds=(b"ERROR",))
        check(m[0] == b"idle" and m[3:6] == [b"", b"0", str(seen).encode()] and m[6] == b"409" and m[7],
              "ERROR on DROP of an idle channel: %r" % m)
        # a busy channel: a long generation runs, more input and two GENs wait behind it
        send(s, b"TEXT", b"busy", b"p", 1, b"abc")
        expect_reply(s, "ACK", 1)
        send(s, b"GEN", b"busy", b"p", 2, b'{"max_tokens":60000,"commit":true}')
        expect_reply(s, "ACK", 2)
        next_pub(sub, kinds=(b"TEXT",))
        for seq in (3, 4, 5):
            send(s, b"TEXT", b"busy", b"p", seq, b"more")
            expect_reply(s, "ACK", seq)
        send(s, b"GEN", b"busy", b"p", 6, b'{"seed":7}')
        expect_reply(s, "ACK", 6)
        send(s, b"GEN", b"busy", b"p", 7, b"")
        expect_reply(s, "ACK", 7)
        r = d.control_json(b"DROP", b"busy")
        check(r["dropped_messages"] == 5, "DROP %r" % r)
        ends, error = {}, None
        while error is None:
            m = next_pub(sub, kinds=(b"END", b"ERROR"))
            check(m[0] == b"busy", "publication for %r" % m[0])
            if m[2] == b"END":
                ends[int(m[4])] = json.loads(m[6])
            else:
                error = m
        check(sorted(ends) == [2, 6, 7] and all(e["reason"] == "cancelled" for e in ends.values()),
              "ENDs before the ERROR: %r" % ends)
        check(ends[6]["n_tokens"] == 0 and ends[6]["text"] == "" and ends[6]["seed"] == 7 and
              not ends[6]["committed"], "END of a discarded GEN %r" % ends[6])
        check(error[3:5] == [b"", b"0"] and error[6] == b"409" and b"5" in error[7], "ERROR %r" % error)
        met = d.control(b"METRICS")[1].decode()
        check(metric(met, 'rwkvd_publish_messages_total{kind="ERROR"}') == 2, "ERRORs counted:\n" + met)
    finally:
        d.close()


def test_ingest_pull():
    """PUSH producers: the INGEST-PULL endpoint takes the same messages without replies."""
    d = Daemon(start=False, profiles="""    sev:
      kind: classify_labels
      trigger: event
      labels:
        - {name: ok, text: " ok"}
        - {name: bad, text: " bad"}
""", extra="limits:\n  max_queue_tokens: 64", env={"RWKVD_TEST_STEP_DELAY_MS": "20"})
    pull_ep = "ipc://%s/pull.sock" % d.dir
    with open(d.conf) as f:
        text = f.read()
    with open(d.conf, "w") as f:
        f.write(text.replace("endpoints:\n", "endpoints:\n  ingest_pull: %s\n" % pull_ep))
    try:
        d.start()
        sub = d.sub(b"p/")
        push = d.ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(pull_ep)
        push.send_multipart([SIG, b"TASK", b"p/a", b"w", b"1", b"sev"])
        push.send_multipart([SIG, b"TEXT", b"p/a", b"w", b"2", b"first line"])
        m = next_pub(sub)
        check(m[0] == b"p/a" and m[2] == b"CLASS" and m[3:5] == [b"w", b"2"], "CLASS after PUSH input %r" % m)
        # rejections become ERROR publications on the channel; a DUP and a SYNC only count
        push.send_multipart([SIG, b"TASK", b"p/a", b"w", b"3", b"nosuch"])
        m = next_pub(sub)
        check(m[2] == b"ERROR" and m[3:5] == [b"w", b"3"] and m[6] == b"404", "ERROR for a PUSH 404 %r" % m)
        push.send_multipart([SIG, b"TEXT", b"p/a", b"w", b"007", b"x"])
        m = next_pub(sub)
        check(m[2] == b"ERROR" and m[3:5] == [b"", b"0"] and m[6] == b"400", "ERROR for a bad seq %r" % m)
        push.send_multipart([SIG, b"TEXT", b"p/a", b"w", b"2", b"first line"])  # a duplicate
        push.send_multipart([SIG, b"SYNC", b"p/a", b"w", b"0"])
        push.send_multipart([SIG, b"TEXT", b"p/a", b"w", b"4", b"second"])
        m = next_pub(sub)
        check(m[2] == b"CLASS" and m[3:5] == [b"w", b"4"], "CLASS after the duplicate %r" % m)
        info = d.control_json(b"INFO", b"p/a")
        check(info["producers"] == [{"id": "w", "acked": 4}] and info["tokens_seen"] == 18, "INFO %r" % info)
        met = d.control(b"METRICS")[1].decode()
        check('rwkvd_ingest_messages_total{op="TEXT",result="dup"} 1' in met, "DUP counted:\n" + met)
        check('rwkvd_ingest_messages_total{op="TASK",result="404"} 1' in met, "404 counted:\n" + met)
        # a full queue holds the socket: 40 messages of 11 tokens into a 64-token queue all arrive
        for seq in range(10, 50):
            push.send_multipart([SIG, b"TOKENS", b"p/b", b"w", str(seq).encode(), np.full(11, 65, "<u4").tobytes()])
        deadline = time.time() + 30
        while True:
            code, body = d.control(b"INFO", b"p/b")
            if code == b"200" and json.loads(body)["producers"] == [{"id": "w", "acked": 49}]:
                break
            check(time.time() < deadline, "PUSH input into a full queue was not all applied: %r" % body)
            time.sleep(0.05)
        wait_drained(d, [b"p/b"])
        check(d.control_json(b"INFO", b"p/b")["tokens_seen"] == 440, "tokens of p/b")
        met = d.control(b"METRICS")[1].decode()
        check('result="429"' not in met, "a full channel must hold the PULL socket, not reject:\n" + met)
        # a DEALER producer is unaffected, and PUSH to the ROUTER endpoint is still not a thing
        s = d.dealer()
        send(s, b"TEXT", b"p/c", b"q", 1, b"dealer")
        expect_reply(s, "ACK", 1)
    finally:
        d.close()


def test_size_first():
    """A message over max_message_bytes with too many frames is 413 (size is checked first)."""
    d = Daemon()
    try:
        s = d.dealer()
        frames = [SIG, b"TEXT", b"a", b"p", b"1"] + [b"x" * 100] * 14
        frames.append(b"y" * (1048592 - sum(len(f) for f in frames)))
        check(len(frames) == 20 and sum(map(len, frames)) == 1048592, "test message")
        s.send_multipart(frames)
        r = recv(s, what="error reply to a 20-frame message of 1,048,592 octets")
        check(r[1] == b"ERROR" and r[5] == b"413" and b"1048576" in r[6], "expected 413, got %r" % r[:7])
        frames = [SIG, b"TEXT", b"a", b"p", b"1"] + [b"x"] * 15
        s.send_multipart(frames)
        r = recv(s, what="error reply to a small 20-frame message")
        check(r[1] == b"ERROR" and r[5] == b"400", "expected 400, got %r" % r)
        send(s, b"TEXT", b"a", b"p", 1, b"fine")
        expect_reply(s, "ACK", 1)
    finally:
        d.close()


def test_tokens_total():
    """Every token in a channel's tokens_seen is in tokens_total, the held last one included."""
    d = Daemon()
    try:
        s = d.dealer()
        chans = [b"t/%d" % i for i in range(20)]
        for i, ch in enumerate(chans):
            send(s, b"TEXT", ch, b"p", 1, b"x" * (i + 1))
            expect_reply(s, "ACK", 1)
        wait_drained(d, chans)
        seen = sum(c["tokens_seen"] for c in d.control_json(b"CHANNELS")["channels"])
        total = d.control_json(b"STATUS")["tokens_total"]
        check(seen == sum(i + 2 for i in range(20)), "tokens_seen sum %d" % seen)
        check(total == seen, "STATUS tokens_total %d, sum of tokens_seen %d" % (total, seen))
        m = d.control(b"METRICS")[1].decode()
        check(metric(m, "rwkvd_tokens_total") == seen, "rwkvd_tokens_total")
    finally:
        d.close()


def test_export_meta():
    """EXPORT leaves out the store's own producer entries, from every tier."""
    d = Daemon()
    try:
        s = d.dealer()
        send(s, b"TEXT", b"x/1", b"p", 1, b"exported")
        expect_reply(s, "ACK", 1)
        wait_drained(d, [b"x/1"])
        for tier in ("resident", "disk"):
            if tier == "disk":
                check(d.control_json(b"EVICT", b"x/1")["tier"] == "disk", "EVICT")
            code, body, blob = control_raw(d, b"EXPORT", b"x/1")
            check(code == b"200" and json.loads(body)["tier"] == tier, "EXPORT %r %r" % (code, body))
            ids = image_producers(blob)
            check(sorted(ids) == sorted([b"p", b"$held", b"$tso", b"$profile:"]),
                  "EXPORT from tier %s carries %r" % (tier, ids))
    finally:
        d.close()


if __name__ == "__main__":
    T.run_named(globals(), "test_protocol.py")
