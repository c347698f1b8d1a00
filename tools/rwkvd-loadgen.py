#!/usr/bin/python3
"""rwkvd load generator (a benchmark, not a test): N producers x M channels on loopback TCP
against a real rwkvd running a random 0.1B-shaped checkpoint on the CPU backend.

  tools/rwkvd-loadgen.py                       # both phases with the defaults below
  tools/rwkvd-loadgen.py --phase throughput --channels 16,64 --tokens 128
  tools/rwkvd-loadgen.py --phase latency --lat-channels 4 --event-bytes 15 --rounds 30

Throughput phase, per M in --channels: N producers (DEALER sockets, --producers) share M
channels; each channel receives --tokens token ids as TOKENS messages of --chunk ids, all
sent at once (the queue limit is raised so nothing is refused). Timed from the first send
until the daemon has fed every token (STATUS tokens_total; each channel's last token stays
held, PROTOCOL.md). Next to it: rwkv-bench --no-logits for the same batch size,
B = min(M, max_batch) (ingest rows need no vocabulary head either), and the daemon's
overhead = daemon time per token / engine time per token - 1.
  Target: overhead <= 10% at batch 64.

Latency phase: --lat-channels channels, each with a classify profile (two one-token labels,
empty prompt suffix: one fork + one logits row per event). Each round sends one event of
--event-bytes bytes (+ the "\\n" separator; byte-level vocabulary, one token per byte) to
every channel at once, waits for every CLASS, then pauses --gap-ms, so it is not
saturated: at most one event per channel in flight and, with the defaults, all the
round's tokens fit in one job of max_batch tokens. Latency = CLASS received - event sent,
both measured here (ingest to publish, transport included); p50/p99 over the rounds
after a warm-up round.
  Target: p99 <= 2 step times, where one step is rwkv-bench's step_ms (no logits) at the
  batch that carries a round's tokens, B = min(max_batch, channels x tokens per event).
  The daemon's own mean job time (METRICS rwkvd_step_seconds_total / rwkvd_steps_total)
  is printed next to it.

The checkpoint defaults to build/bench/rwkv7-0.1b-bf16.pth and is generated there when
absent (tools/gen-checkpoint.py --layers 12 --embd 768 --vocab 65536 --dtype bf16 --seed 1).
The daemon runs with vocab: bytes (any model with V >= 256 takes byte ids). Needs
python3-zmq and python3-numpy, build/daemon/rwkvd and build/tools/rwkv-bench.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import zmq

SIG = b"RWKV1"
HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Daemon:
    def __init__(self, a, n_slots, max_queue_tokens, profile=False):
        self.dir = tempfile.mkdtemp(prefix="rwkvd-loadgen")
        self.ing, self.pub, self.ctl = ("tcp://127.0.0.1:%d" % free_port() for _ in range(3))
        prof = ""
        if profile:
            prof = ("tasks:\n  default_profile: yn\n  profiles:\n    yn:\n      kind: classify_labels\n"
                    "      trigger: event\n      labels: [{name: y, text: \"y\"}, {name: n, text: \"n\"}]\n")
        conf = os.path.join(self.dir, "rwkvd.yaml")
        with open(conf, "w") as f:
            f.write("model: {path: %s, vocab: bytes, threads: %d, state_slots: %d, max_batch: %d}\n"
                    "endpoints: {ingest: \"%s\", publish: \"%s\", control: \"%s\"}\n"
                    "limits: {max_queue_tokens: %d, max_channels: %d}\nstate_dir: %s\n%s%s"
                    % (a.model, a.threads, n_slots, a.max_batch, self.ing, self.pub, self.ctl,
                       max_queue_tokens, n_slots, self.dir, prof,
                       "durability: {fsync: %s}\n" % a.fsync if a.fsync else ""))
        self.log = open(os.path.join(self.dir, "rwkvd.log"), "w")
        self.proc = subprocess.Popen([a.rwkvd, "-c", conf], stdout=self.log, stderr=subprocess.STDOUT)
        self.zctx = zmq.Context()
        self.req = None
        deadline = time.time() + 120
        while True:
            try:
                self.status(timeout_ms=500)
                break
            except TimeoutError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise SystemExit("rwkvd did not start:\n" + open(self.log.name).read())

    def _control(self, cmd, timeout_ms=30000):
        if self.req is None:
            self.req = self.zctx.socket(zmq.REQ)
            self.req.setsockopt(zmq.LINGER, 0)
            self.req.connect(self.ctl)
        self.req.send_multipart([SIG, cmd])
        if not self.req.poll(timeout_ms):
            self.req.close()
            self.req = None
            raise TimeoutError(cmd)
        return self.req.recv_multipart()

    def status(self, timeout_ms=30000):
        return json.loads(self._control(b"STATUS", timeout_ms)[2])

    def metrics(self):
        out = {}
        for ln in self._control(b"METRICS")[2].decode().splitlines():
            if ln and not ln.startswith("#"):
                k, v = ln.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.zctx.destroy(linger=0)
        shutil.rmtree(self.dir, ignore_errors=True)


def engine_bench(a, batches):
    """{B: (step_ms, tokens_per_s)} from rwkv-bench --no-logits."""
    out = subprocess.run([a.rwkv_bench, "--model", a.model, "--batch", ",".join(map(str, sorted(set(batches)))),
                          "--threads", str(a.threads), "--no-logits"], capture_output=True, text=True)
    res = {}
    for ln in out.stdout.splitlines():
        f = ln.split()
        if len(f) > 5 and not ln.startswith("#") and f[0] != "model":
            res[int(f[2])] = (float(f[4]), float(f[5]))  # model weights B thr step_ms tok/s ...
    missing = [b for b in batches if b not in res]
    if missing:
        raise SystemExit("rwkv-bench gave no figure for batch %r:\n%s%s" % (missing, out.stdout, out.stderr))
    return res


def throughput(a, m):
    d = Daemon(a, n_slots=m + 4, max_queue_tokens=a.tokens + a.chunk)
    try:
        prods = []
        for p in range(a.producers):
            s = d.zctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, 0)
            s.connect(d.ing)
            prods.append(s)
        ids = (np.arange(a.tokens, dtype="<u4") * 7 + 1) % 256
        msgs = []  # interleaved: chunk k of every channel, then chunk k+1
        for k, lo in enumerate(range(0, a.tokens, a.chunk)):
            for c in range(m):
                msgs.append((c % a.producers, b"load/%d" % c, b"p%d" % (c % a.producers), k + 1,
                             ids[lo:lo + a.chunk].tobytes()))
        base = d.status()["tokens_total"]
        t0 = time.perf_counter()
        for p, ch, prod, seq, payload in msgs:
            prods[p].send_multipart([SIG, b"TOKENS", ch, prod, b"%d" % seq, payload])
        poller = zmq.Poller()
        for s in prods:
            poller.register(s, zmq.POLLIN)
        acked = 0
        while acked < len(msgs):
            ev = dict(poller.poll(30000))
            if not ev:
                raise SystemExit("no ACK within 30 s")
            for s in ev:
                r = s.recv_multipart()
                if r[1] != b"ACK":
                    raise SystemExit("refused: %r" % r)
                acked += 1
        want = base + m * (a.tokens - 1)
        while d.status()["tokens_total"] < want:
            time.sleep(0.01)
        dt = time.perf_counter() - t0
        met = d.metrics()
        return m * (a.tokens - 1) / dt, met["rwkvd_step_seconds_total"] / max(1, met["rwkvd_steps_total"])
    finally:
        d.close()


def latency(a):
    n = a.lat_channels
    d = Daemon(a, n_slots=n + 8, max_queue_tokens=65536, profile=True)
    lat = []
    try:
        sub = d.zctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.connect(d.pub)
        sub.setsockopt(zmq.SUBSCRIBE, b"lat/")
        prods = []
        for p in range(a.producers):
            s = d.zctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(d.ing)
            prods.append(s)
        time.sleep(0.5)  # slow joiner: let the subscription reach the daemon
        m0 = None
        for r in range(a.rounds + 1):
            if r == 1:
                m0 = d.metrics()
            sent = {}
            for c in range(n):
                ch = b"lat/%d" % c
                text = (b"event %d of %d " % (r, c) + b"x" * a.event_bytes)[:a.event_bytes]
                sent[ch] = time.perf_counter()
                prods[c % a.producers].send_multipart([SIG, b"TEXT", ch, b"p%d" % (c % a.producers), b"%d" % (r + 1),
                                                       text])
            got = 0
            while got < n:
                if not sub.poll(30000):
                    raise SystemExit("no CLASS within 30 s")
                msg = sub.recv_multipart()
                now = time.perf_counter()
                if msg[2] != b"CLASS":
                    raise SystemExit("unexpected publication %r" % msg)
                if r > 0:  # round 0 warms up (channel creation)
                    lat.append((now - sent[msg[0]]) * 1000)
                got += 1
            for s in prods:
                while s.poll(0):
                    r_ = s.recv_multipart()
                    if r_[1] != b"ACK":
                        raise SystemExit("refused: %r" % r_)
            time.sleep(a.gap_ms / 1000)
        m1 = d.metrics()
        steps = m1["rwkvd_steps_total"] - m0["rwkvd_steps_total"]
        job_ms = (m1["rwkvd_step_seconds_total"] - m0["rwkvd_step_seconds_total"]) * 1000 / max(1, steps)
    finally:
        d.close()
    lat.sort()
    p50 = lat[len(lat) // 2]
    p99 = lat[min(len(lat) - 1, int(np.ceil(len(lat) * 0.99)) - 1)]
    return p50, p99, len(lat), steps / a.rounds, job_ms


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="build/bench/rwkv7-0.1b-bf16.pth")
    ap.add_argument("--phase", choices=["all", "throughput", "latency"], default="all")
    ap.add_argument("--producers", type=int, default=4)
    ap.add_argument("--channels", default="64", help="throughput: channel counts, comma-separated")
    ap.add_argument("--tokens", type=int, default=64, help="throughput: tokens per channel")
    ap.add_argument("--chunk", type=int, default=16, help="throughput: token ids per TOKENS message")
    ap.add_argument("--lat-channels", type=int, default=4)
    ap.add_argument("--event-bytes", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--gap-ms", type=float, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--fsync", choices=["no", "everysec", "always"], default=None,
                    help="durability.fsync of the daemon (default: the daemon's, everysec)")
    ap.add_argument("--rwkvd", default="build/daemon/rwkvd")
    ap.add_argument("--rwkv-bench", default="build/tools/rwkv-bench")
    a = ap.parse_args()
    if not os.path.exists(a.model):
        os.makedirs(os.path.dirname(a.model) or ".", exist_ok=True)
        print("# generating %s (random weights, 0.1B shape)" % a.model, flush=True)
        subprocess.run([sys.executable, os.path.join(HERE, "gen-checkpoint.py"), "--out", a.model, "--layers", "12",
                        "--embd", "768", "--vocab", "65536", "--dtype", "bf16", "--seed", "1"], check=True)
    chans = [int(x) for x in a.channels.split(",")] if a.phase != "latency" else []
    lat_b = min(a.max_batch, a.lat_channels * (a.event_bytes + 1))
    batches = [min(m, a.max_batch) for m in chans] + ([lat_b] if a.phase != "throughput" else [])
    print("# rwkvd-loadgen: %s, CPU backend, %d threads, max_batch %d, %d producers over tcp://127.0.0.1"
          % (a.model, a.threads, a.max_batch, a.producers), flush=True)
    eng = engine_bench(a, batches)
    if chans:
        print("\n| channels | batch | rwkvd tokens/s | engine tokens/s (rwkv-bench --no-logits) | daemon overhead "
              "| mean job ms |")
        print("|---|---|---|---|---|---|")
        for m in chans:
            rate, job_s = throughput(a, m)
            b = min(m, a.max_batch)
            ov = eng[b][1] / rate - 1
            print("| %d | %d | %.1f | %.1f | %+.1f%% | %.1f |" % (m, b, rate, eng[b][1], ov * 100, job_s * 1000),
                  flush=True)
        if a.max_batch in [min(m, a.max_batch) for m in chans]:
            print("target: daemon overhead <= 10%% of engine time at batch %d" % a.max_batch)
    if a.phase != "throughput":
        p50, p99, n, jobs_per_round, job_ms = latency(a)
        step = eng[lat_b][0]
        print("\n| channels | tokens/event | events | p50 ms | p99 ms | step ms (engine, batch %d) | p99 / step "
              "| jobs/round | mean job ms |" % lat_b)
        print("|---|---|---|---|---|---|---|---|---|")
        print("| %d | %d | %d | %.1f | %.1f | %.1f | %.2f | %.1f | %.1f |"
              % (a.lat_channels, a.event_bytes + 1, n, p50, p99, step, p99 / step, jobs_per_round, job_ms))
        print("target: p99 <= 2 step times (%.1f ms) when not saturated: %s"
              % (2 * step, "met" if p99 <= 2 * step else "NOT met"))


if __name__ == "__main__":
    main()
