#!/usr/bin/python3
"""rwkvd durable-state benchmark at daemon level (not a test): recovery of many channels by
the real rwkvd on a random 0.1B-shaped checkpoint (L12 C768, state 2,433,024 bytes per
channel), CPU backend. The store-level figures (snapshot write/load MB/s, WAL append cost
per token under each fsync policy) come from build/tests/durable/rwkvd-durable-bench.

  tools/rwkvd-durable-bench.py                      # 1000 channels, 3 runs
  tools/rwkvd-durable-bench.py --channels 200 --runs 5 --dir /var/tmp

Steps: rwkvd starts with state_slots = channels + 2 (every state resident) and fsync no;
each channel gets one TOKENS message of --fill tokens; SIGTERM writes every channel's
snapshot (the shutdown snapshot: its time and MB/s are printed from the daemon's log line).
A restart then gets one TOKENS message of --tail tokens per channel (the WAL tail), and is
killed with kill -9. Each measured run starts rwkvd on that state directory (1 snapshot per
channel + the tail), warm (page cache) or cold (the snapshot and WAL files' pages dropped
with posix_fadvise first), and reports rwkvd's own recovery time (its "recovered ... in X s"
log line: load, validate and import every snapshot into its slot, read the WAL tail and
queue it) and the time from exec to the first STATUS answer (model load included); then
kill -9, so every run recovers the same files. Medians of --runs runs. Needs python3-zmq.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import zmq

SIG = b"RWKV1"
HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def drop_pages(root):
    for dirpath, _, files in os.walk(root):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


class Rwkvd:
    def __init__(self, a, workdir):
        self.a = a
        self.dir = workdir
        self.ing, self.pub, self.ctl = ("tcp://127.0.0.1:%d" % free_port() for _ in range(3))
        self.conf = os.path.join(workdir, "rwkvd.yaml")
        with open(self.conf, "w") as f:
            f.write("model: {path: %s, vocab: bytes, threads: %d, state_slots: %d, max_batch: %d}\n"
                    "endpoints: {ingest: \"%s\", publish: \"%s\", control: \"%s\"}\n"
                    "limits: {max_channels: %d}\nstate_dir: %s/state\n"
                    "durability: {fsync: \"no\", snapshot_interval: 0, snapshot_every_tokens: 0}\n"
                    % (a.model, a.threads, a.channels + 2, a.max_batch, self.ing, self.pub, self.ctl,
                       a.channels, workdir))
        self.ctx = zmq.Context()
        self.proc = None

    def start(self):
        self.logpath = os.path.join(self.dir, "rwkvd-%d.log" % time.monotonic_ns())
        log = open(self.logpath, "w")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([self.a.rwkvd, "-c", self.conf], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.time() + 600
        while True:
            try:
                self.status(timeout_ms=200)
                return time.perf_counter() - t0
            except TimeoutError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise SystemExit("rwkvd did not start:\n" + self.logtext())

    def logtext(self):
        with open(self.logpath) as f:
            return f.read()

    def status(self, timeout_ms=30000):
        s = self.ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(self.ctl)
        s.send_multipart([SIG, b"STATUS"])
        ok = s.poll(timeout_ms)
        r = s.recv_multipart() if ok else None
        s.close()
        if not ok:
            raise TimeoutError("STATUS")
        return json.loads(r[2])

    def feed(self, n_tokens, seq):
        """One TOKENS message of n_tokens ids per channel; wait for every ACK, then until the
        engine has fed them (the last token of each channel stays held)."""
        base = self.status()["tokens_total"]
        d = self.ctx.socket(zmq.DEALER)
        d.setsockopt(zmq.LINGER, 0)
        d.connect(self.ing)
        payload = struct.pack("<%dI" % n_tokens, *[(i * 7 + 3) % 256 for i in range(n_tokens)])
        for c in range(self.a.channels):
            d.send_multipart([SIG, b"TOKENS", b"bench/%d" % c, b"p", b"%d" % seq, payload])
        for _ in range(self.a.channels):
            if not d.poll(60000):
                raise SystemExit("no ACK within 60 s")
            r = d.recv_multipart()
            if r[1] not in (b"ACK", b"DUP"):
                raise SystemExit("ingest reply %r" % r)
        d.close()
        want = base + self.a.channels * (n_tokens - 1 if seq == 1 else n_tokens)
        while self.status()["tokens_total"] < want:
            time.sleep(0.05)

    def stop(self, sig):
        self.proc.send_signal(sig)
        self.proc.wait(600)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="build/bench/rwkv7-0.1b-bf16.pth")
    ap.add_argument("--channels", type=int, default=1000)
    ap.add_argument("--fill", type=int, default=4, help="tokens per channel before the snapshot")
    ap.add_argument("--tail", type=int, default=16, help="tokens per channel in the WAL tail")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--dir", default=None, help="where the state directory goes (default: $TMPDIR)")
    ap.add_argument("--rwkvd", default="build/daemon/rwkvd")
    a = ap.parse_args()
    if not os.path.exists(a.model):
        os.makedirs(os.path.dirname(a.model) or ".", exist_ok=True)
        print("# generating %s (random weights, 0.1B shape)" % a.model, flush=True)
        subprocess.run([sys.executable, os.path.join(HERE, "gen-checkpoint.py"), "--out", a.model, "--layers", "12",
                        "--embd", "768", "--vocab", "65536", "--dtype", "bf16", "--seed", "1"], check=True)
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    work = tempfile.mkdtemp(prefix="rwkvd-durable-bench", dir=a.dir)
    print("# machine: %s, %d CPUs; %s; state in %s; a shared machine: other jobs move these figures"
          % (cpu, os.cpu_count(), a.model, work), flush=True)
    d = Rwkvd(a, work)
    try:
        d.start()
        d.feed(a.fill, 1)
        d.stop(signal.SIGTERM)
        m = re.search(r"shutdown snapshot: (\d+) channel\(s\), (\d+) bytes in ([0-9.]+) s", d.logtext())
        if m:
            n, b, s = int(m.group(1)), int(m.group(2)), float(m.group(3))
            print("shutdown snapshot (SIGTERM): %d channels, %.0f MB in %.2f s: %.0f MB/s, %.0f channels/s"
                  % (n, b / 1e6, s, b / 1e6 / s, n / s), flush=True)
        d.start()
        d.feed(a.tail, 2)
        d.stop(signal.SIGKILL)
        snaps = os.path.join(work, "state", "snapshots")
        size = sum(os.path.getsize(os.path.join(snaps, f)) for f in os.listdir(snaps))
        print("state: %d snapshot files, %.0f MB; WAL tail: %d records of %d tokens"
              % (len(os.listdir(snaps)), size / 1e6, a.channels, a.tail), flush=True)
        for cold in (False, True):
            rec, wall = [], []
            for _ in range(a.runs):
                if cold:
                    drop_pages(os.path.join(work, "state"))
                wall.append(d.start())
                m = re.search(r"recovered (\d+) channel\(s\) \((\d+) from snapshots\) and (\d+) input-log record\(s\).* "
                              r"in ([0-9.]+) s", d.logtext())
                if not m or int(m.group(2)) != a.channels or int(m.group(3)) != a.channels:
                    raise SystemExit("unexpected recovery:\n" + d.logtext())
                rec.append(float(m.group(4)))
                d.stop(signal.SIGKILL)
            r = statistics.median(rec)
            print("recovery (%s), %d channels + %d WAL records: rwkvd %.3f s (%.0f channels/s, %.0f MB/s of "
                  "snapshots); exec to first STATUS %.2f s (model load included); medians of %d"
                  % ("cold: pages dropped" if cold else "page cache", a.channels, a.channels, r, a.channels / r,
                     size / 1e6 / r, statistics.median(wall), a.runs), flush=True)
    finally:
        if d.proc and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        d.ctx.destroy(linger=0)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
