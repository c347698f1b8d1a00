#!/usr/bin/python3
"""Soak: the real rwkvd under a steady mixed load for a while, watching for what only shows
with time — memory that grows, descriptors that leak, an input log that is never cut,
snapshot files that pile up, published outputs that go missing — and, at the end, every
channel's state against an uninterrupted reference run, bit for bit.

Usage: test_soak.py [SECONDS]  (default $RWKVD_SOAK_SECONDS, else 40; make check runs 40 s,
the soak suite; an hour is `meson test -C build --suite soak --test-args 3600` or running
this file directly with the test environment of tests/daemon/meson.build).

The load, all from one seeded generator (RWKVD_SOAK_SEED), at RWKVD_SOAK_RATE (400) new
messages a second with up to 12 in flight: 24 state channels, four times more than
resident_channels, so they cycle resident -> host -> disk -> resident; TEXT and TOKENS
events, TASK switches to a classifying profile (CLASS per event), duplicates resent on
purpose; two generation channels with GEN requests whose TEXT/END must all arrive;
SNAPSHOT, CHANNELS, STATUS and METRICS on the control socket meanwhile. From 40% to 50% of
the time the rate limit is off: queues fill, and the daemon's refusals (507 when every slot
holds a busy channel, 425 behind it) are handled as PROTOCOL.md §8.2 says — back off,
resend from the refused seq in order — so nothing is lost; a GEN that finds no slot ends
with ERROR 507 and END reason "error". Durability is on
with fsync everysec, 2 s snapshots and 64 KiB log segments, so the log rotates and is cut
many times. Once a second the daemon's RSS, open descriptors, log and snapshot files are
sampled. What must hold is written next to each check below."""
import json
import os
import random
import signal
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_rwkvd as T  # noqa: E402  (skips with 77 when zmq/numpy are missing)
from test_rwkvd import Daemon, Fail, check  # noqa: E402
import test_durable as D  # noqa: E402

CHANNELS = [b"s/%d" % i for i in range(24)]
GEN_CHANNELS = [b"g/0", b"g/1"]
SEGMENT = 64 * 1024
WINDOW = 12  # ingest messages in flight (at most 4 per channel)

PROFILES = """    chat:
      kind: continue
      trigger: request
      prompt_suffix: ""
      generate: {max_tokens: 12, temperature: 0}
""" + T.SEV_PROFILE
CONFIG = dict(profiles=PROFILES, default_profile="chat", max_batch=8, slots=24,
              durability="durability:\n  fsync: everysec\n  snapshot_interval: 2s\n"
                         "  snapshot_every_tokens: 4000\n  wal_segment_bytes: %d\n" % SEGMENT)
# a state of the test model is 33,792 bytes: the host tier holds four
RESIDENCY = "residency:\n  resident_channels: 6\n  idle_ttl: 300ms\n  host_max_bytes: 140000\n"


def proc_sample(d):
    """(RSS bytes, open descriptors, log bytes, log segments, snapshot-dir files) now."""
    pid = d.proc.pid
    with open("/proc/%d/status" % pid) as f:
        rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    fds = len(os.listdir("/proc/%d/fd" % pid))
    wal_dir = os.path.join(d.dir, "state", "wal")
    segs = [os.path.join(wal_dir, n) for n in os.listdir(wal_dir)]
    wal_bytes = 0
    for p in segs:
        try:
            wal_bytes += os.path.getsize(p)
        except OSError:  # deleted by a truncation since the listing
            pass
    snaps = len(os.listdir(os.path.join(d.dir, "state", "snapshots")))
    return rss, fds, wal_bytes, len(segs), snaps


class Load:
    """The seeded message stream: per channel rising seqs; every message kept for the reference."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.by_chan = {c: [] for c in CHANNELS + GEN_CHANNELS}  # index seq-1
        self.msgs = []  # (channel, seq, op, payload) of the state channels, in creation order
        self.sev = {c: False for c in CHANNELS}

    def make(self, c):
        rng, seq = self.rng, len(self.by_chan[c]) + 1
        if c in GEN_CHANNELS:
            m = (c, seq, b"GEN", b"") if seq > 1 else (c, seq, b"TEXT", b"tell me more about the logs")
        else:
            r = rng.random()
            if r < 0.03:
                self.sev[c] = not self.sev[c]
                m = (c, seq, b"TASK", b"sev" if self.sev[c] else b"chat")
            elif r < 0.7:
                text = "".join(rng.choice("abcdefgh ijk\n") for _ in range(rng.randint(1, 60)))
                m = (c, seq, b"TEXT", text.encode())
            else:
                toks = [rng.randint(0, 255) for _ in range(rng.randint(1, 40))]
                m = (c, seq, b"TOKENS", struct.pack("<%dI" % len(toks), *toks))
            self.msgs.append(m)
        self.by_chan[c].append(m)
        return m


RETRYABLE = (b"409", b"429", b"500", b"503", b"507")


def run(seconds, seed, rate):
    load = Load(seed)
    d = Daemon(extra=RESIDENCY, **CONFIG)
    try:
        s = d.dealer()
        sub = d.sub(b"")
        chans = CHANNELS + GEN_CHANNELS
        acked = {c: 0 for c in chans}
        sent = {c: 0 for c in chans}      # highest seq sent (after a refusal: the one before it)
        paused = {c: 0.0 for c in chans}  # no sending before this time (PROTOCOL.md §8.2)
        flight = {c: 0 for c in chans}
        st = dict(refused=0, out_of_turn=0, dups_sent=0, dups=0, sent=0, class_seen=0, gen_done=0, gen_refused=0)
        gen_open = {g: 0 for g in GEN_CHANNELS}
        gen_err = {}
        next_gen = {g: 0.0 for g in GEN_CHANNELS}
        samples = []
        t0 = time.time()
        deadline = t0 + seconds
        next_sample = next_ctl = t0
        budget = 0.0

        def reply(r):
            check(r[0] == T.SIG, "reply signature %r" % r[:2])
            kind, c = r[1], r[2]
            if kind == b"CREDIT":  # unsolicited, answers no message
                return
            seq = int(r[4])
            flight[c] -= 1
            if kind in (b"ACK", b"DUP"):
                st["dups"] += kind == b"DUP"
                acked[c] = max(acked[c], seq)
            elif kind == b"ERROR" and r[5] in RETRYABLE:  # back off, then resend from seq in order
                st["refused"] += 1
                sent[c] = min(sent[c], seq - 1)
                paused[c] = time.time() + 0.05
            elif kind == b"ERROR" and r[5] == b"425":  # in flight behind a refused one: expected
                st["out_of_turn"] += 1
            else:
                raise Fail("ingest reply %r" % r)

        def publications():
            while sub.poll(0):
                m = sub.recv_multipart()
                if m[2] == b"CLASS":
                    check(m[0] in CHANNELS, "CLASS on %r" % m[0])
                    st["class_seen"] += 1
                elif m[2] == b"END":
                    end = json.loads(m[6])
                    check(gen_open.get(m[0], 0) > 0, "END nobody asked for on %r" % m[0])
                    if end["reason"] == "error":  # after the ERROR below
                        check(gen_err.get(m[0]) and end["n_tokens"] == 0, "END %r without its ERROR" % end)
                        gen_err[m[0]] = False
                    else:
                        check(end["reason"] == "max_tokens" and end["n_tokens"] == 12, "END %r" % end)
                        st["gen_done"] += 1
                    gen_open[m[0]] -= 1
                elif m[2] == b"ERROR" and m[0] in GEN_CHANNELS and m[6] == b"507":
                    # a generation needs a slot; with every channel busy (the burst) it may
                    # find none: an ERROR, then END with reason "error"
                    check(gen_open[m[0]] > 0, "generation ERROR nobody asked for %r" % m)
                    gen_err[m[0]] = True
                    st["gen_refused"] += 1
                elif m[2] == b"ERROR":
                    raise Fail("published ERROR %r" % m)

        def send_next(c, now, new_ok):
            """Send channel c's next message: a resend after a refusal, else (new_ok) a new one."""
            if now < paused[c] or flight[c] >= 4:
                return False
            seq = sent[c] + 1
            if seq > len(load.by_chan[c]):
                if not new_ok:
                    return False
                load.make(c)
            _, _, op, payload = load.by_chan[c][seq - 1]
            T.send(s, op, c, b"p", seq, payload)
            sent[c] = seq
            flight[c] += 1
            return True

        last = t0
        while True:
            now = time.time()
            running = now < deadline
            # a burst in the middle: no rate limit, so queues fill and backpressure shows
            burst = running and 0.4 * seconds <= now - t0 < 0.5 * seconds
            budget = min(budget + (now - last) * rate, 2.0 * WINDOW) if not burst else 2.0 * WINDOW
            last = now
            if now >= next_sample:
                samples.append((now - t0,) + proc_sample(d))
                next_sample += 1.0
            if running and now >= next_ctl:  # operator traffic while the load runs
                D.metrics(d)
                d.control_json(b"STATUS")
                d.control_json(b"CHANNELS")
                check(d.control(b"SNAPSHOT")[0] == b"200", "SNAPSHOT")
                next_ctl += 5.0
            for g in GEN_CHANNELS:  # one generation at a time per gen channel
                if running and not gen_open[g] and now >= next_gen[g] and sent[g] == len(load.by_chan[g]):
                    if send_next(g, now, True) and load.by_chan[g][-1][2] == b"GEN":
                        gen_open[g] += 1
                        next_gen[g] = now + 1.0
                else:
                    send_next(g, now, False)  # resends only
            total = sum(flight.values())
            for c in load.rng.sample(CHANNELS, len(CHANNELS)):
                if total >= WINDOW:
                    break
                new_ok = running and budget >= 1.0
                if running and acked[c] and load.rng.random() < 0.002 and flight[c] == 0 and now >= paused[c]:
                    _, seq, op, payload = load.by_chan[c][load.rng.randrange(acked[c])]  # a resend: DUP
                    T.send(s, op, c, b"p", seq, payload)
                    flight[c] += 1
                    st["dups_sent"] += 1
                    total += 1
                    continue
                if send_next(c, now, new_ok):
                    total += 1
                    if sent[c] == len(load.by_chan[c]) and new_ok:
                        budget -= 1.0
                        st["sent"] += 1
            done = not running and all(acked[c] == len(load.by_chan[c]) for c in chans) and not any(gen_open.values())
            if done:
                break
            check(now < deadline + 60, "load not acknowledged within 60 s of the end: %r"
                  % {c: (acked[c], len(load.by_chan[c])) for c in chans if acked[c] < len(load.by_chan[c])})
            if s.poll(5):
                reply(s.recv_multipart())
                while s.poll(0):
                    reply(s.recv_multipart())
            publications()
        elapsed = time.time() - t0
        samples.append((elapsed,) + proc_sample(d))
        # all applied and snapshotted twice (SNAPSHOT writes one generation, and the log is kept
        # back to the older one, .prev, which a background round wrote up to 2 s of load ago):
        # both generations hold everything, so the log must shrink back to its last segment or two
        quiet = time.time() + 30
        while any(D.info(d, c)["queued_messages"] for c in chans):
            check(time.time() < quiet, "queues not drained")
            time.sleep(0.05)
        for _ in range(2):
            check(d.control(b"SNAPSHOT")[0] == b"200", "SNAPSHOT")
        after = proc_sample(d)
        m = D.metrics(d)
        code, body = d.control(b"METRICS")
        dropped = [line for line in body.decode().splitlines() if line.startswith("rwkvd_publish_dropped_total")]
        samples_m = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
                     if line and not line.startswith("#")}
        in_tokens = int(samples_m["rwkvd_input_tokens_total"])
        durability = d.control_json(b"STATUS")["durability"]
        # idle channels still move to disk (idle_ttl): snapshots may complete between the two
        # reads, so STATUS must lie between METRICS before it and METRICS after it
        ok_after = next(float(line.rsplit(" ", 1)[1]) for line in d.control(b"METRICS")[1].decode().splitlines()
                        if line.startswith('rwkvd_snapshots_total{result="ok"}'))
        got = D.drained_states(d, CHANNELS)  # SIGTERM, snapshot of every channel
        log = d.logtext()
    finally:
        d.close()
    gen_asked = sum(len(v) - 1 for v in (load.by_chan[g] for g in GEN_CHANNELS))
    n_sent, dups_sent, class_seen, gen_done = st["sent"], st["dups_sent"], st["class_seen"], st["gen_done"]
    dups_got = st["dups"]

    # --- what must hold -------------------------------------------------------------------
    print("%.0f s: %d messages (%d duplicates resent, %d DUP), %.0f msg/s; %d refused with a retryable code and "
          "resent (%d out-of-turn 425); %d CLASS; %d/%d generations ended (%d refused for want of a slot)"
          % (elapsed, n_sent, dups_sent, dups_got, n_sent / elapsed, st["refused"], st["out_of_turn"], class_seen,
             gen_done, gen_asked, st["gen_refused"]))
    check(dups_got >= dups_sent, "every resend of an acknowledged message is a DUP (%d of %d)" % (dups_got, dups_sent))
    check(gen_done + st["gen_refused"] == gen_asked and gen_done > 0, "every GEN ended or was refused")
    check(class_seen > 0, "the classifying profile published")
    # snapshots kept being written, none failed, the log never failed (STATUS and METRICS agree)
    snaps = durability["snapshots"]
    print("snapshots: %d written (%.1f MB), %d failed; input log LSN %d..%d"
          % (snaps["written"], snaps["bytes"] / 1e6, snaps["failed"], durability["wal"]["first_lsn"],
             durability["wal"]["next_lsn"]))
    check(snaps["written"] > len(CHANNELS) and snaps["failed"] == 0 and durability["wal"]["failed"] is None,
          "durability %r" % durability)
    check(samples_m['rwkvd_snapshots_total{result="ok"}'] <= snaps["written"] <= ok_after and
          samples_m["rwkvd_wal_failed"] == 0, "METRICS and STATUS disagree on snapshots")
    check(all(line.endswith(" 0") for line in dropped), "publications dropped: %r" % dropped)
    print("tiers: %r" % {k: v for k, v in m.items() if "demotions" in k or "promotions" in k})
    check(any(v > 0 for k, v in m.items() if 'rwkvd_tier_promotions_total{from="disk"}' in k),
          "channels cycled through the disk tier")
    bad = [line for line in log.splitlines() if ": error:" in line or ": crit" in line]
    check(not bad, "error lines in the daemon log: %r" % bad[:5])

    warm = [x for x in samples if x[0] >= min(10.0, seconds * 0.25)]
    check(len(warm) >= 4, "too few samples after warm-up: %d" % len(warm))
    half = len(warm) // 2
    rss_first, rss_second = max(x[1] for x in warm[:half]), max(x[1] for x in warm[half:])
    fds_first, fds_last = warm[0][2], warm[-1][2]
    wal_max = max(x[3] for x in samples)
    segs_max = max(x[4] for x in samples)
    snaps_max = max(x[5] for x in samples)
    print("RSS %.1f MB after warm-up, %.1f MB max in the second half; descriptors %d -> %d; "
          "input log max %d KiB in %d segments, %d KiB in %d after the final snapshot; snapshot dir max %d files"
          % (rss_first / 1e6, rss_second / 1e6, fds_first, fds_last, wal_max // 1024, segs_max, after[2] // 1024,
             after[3], snaps_max))
    # memory: the second half may not grow past the first by more than 2 MiB + 3% (allocator noise)
    check(rss_second <= rss_first * 1.03 + 2 * 1024 * 1024,
          "RSS grew from %d to %d bytes during the soak" % (rss_first, rss_second))
    check(fds_last <= fds_first + 2, "open descriptors grew from %d to %d" % (fds_first, fds_last))
    # the log is cut behind the snapshots (checked above, after the final one); the load rotated it
    logged = 4 * in_tokens  # at least: every input token is a 32-bit id in a log record
    check(after[3] <= 2, "after a snapshot of the drained channels the input log still has %d segments "
          "(%d KiB)" % (after[3], after[2] // 1024))
    check(logged > 4 * SEGMENT, "the load was too small to rotate the log (%d bytes logged)" % logged)
    # two generations per channel, plus the temporary file and the rotation link of the one
    # being written (FORMATS.md §1): nothing piles up
    bound = 2 * (len(CHANNELS) + len(GEN_CHANNELS)) + 2
    check(snaps_max <= bound, "%d files in the snapshot directory (at most %d)" % (snaps_max, bound))

    # the tier gauges add up to the channels, their bytes to whole states
    state_bytes = len(next(iter(got.values()))[0])
    D.check_tier_metrics(m, state_bytes, len(CHANNELS) + len(GEN_CHANNELS))

    # the states equal a run that got the same input at once, every channel resident (fsync
    # "no" there: under everysec an ACK may wait for the next flush, which changes no state)
    ref = D.reference(load.msgs, CHANNELS, **dict(CONFIG, slots=32, durability=None))
    D.compare(got, ref, "soak", CHANNELS)
    print("all %d channel states equal the reference" % len(CHANNELS))


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else float(os.environ.get("RWKVD_SOAK_SECONDS", "40"))
    seed = int(os.environ.get("RWKVD_SOAK_SEED", "1"))
    rate = float(os.environ.get("RWKVD_SOAK_RATE", "400"))  # new messages per second at most
    try:
        run(seconds, seed, rate)
    except Fail as e:
        print("FAIL: %s" % e)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
