#!/usr/bin/python3
"""Warm-standby figures (a benchmark, not a test): the full sync of N channels of 0.1B-shaped
states (L=12, C=768: 2.43 MB each) from a primary to a standby over ipc://, and the takeover
delay after SIGKILL of the primary.

  tools/rwkvd-failover-bench.py [--channels 200] [--failover-ms 1000] [--heartbeat-ms 100]

Builds on the integration harness (tests/daemon/test_rwkvd.py, test_failover.py): the rwkvd
binary from $RWKVD (default build/daemon/rwkvd); a random 0.1B-shaped byte-level checkpoint
from tools/gen-checkpoint.py (cached in the temp dir). The primary gets one token per channel
and a SNAPSHOT; the standby's own log line gives the sync's bytes and seconds (snapshots
decoded, checked and written with fsync, input log appended). Floor: the standby writes every
state once with an fsync per file, so the sync is bounded by the disk's fsync'd write rate."""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "daemon"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, default=200)
    ap.add_argument("--failover-ms", type=int, default=1000)
    ap.add_argument("--heartbeat-ms", type=int, default=100)
    a = ap.parse_args()
    model = os.path.join(tempfile.gettempdir(), "rwkvd-failover-bench-0.1b.pth")
    if not os.path.exists(model):
        subprocess.run([sys.executable, os.path.join(HERE, "gen-checkpoint.py"), "--out", model, "--layers", "12",
                        "--embd", "768", "--vocab", "256", "--dtype", "bf16", "--seed", "1"], check=True)
    os.environ["RWKVD_TEST_MODEL"] = model
    import test_rwkvd as T
    T.MODEL = model
    import test_failover as F
    F.FAILOVER_MS, F.HEARTBEAT_MS = a.failover_ms, a.heartbeat_ms
    n = a.channels
    pri = T.Daemon(start=False, max_batch=64, slots=n + 8)
    sby = T.Daemon(start=False, max_batch=64, slots=n + 8)
    try:
        for d in (pri, sby):
            d.write_config("", F.repl_config(d, ""), "", 64, n + 8)
        F.launch(pri)
        s = pri.dealer()
        for i in range(n):
            T.send(s, b"TOKENS", b"b/%d" % i, b"p", 1, b"\x01\x00\x00\x00")
        for i in range(n):
            T.recv(s, 60000, "ACK")
        while pri.control_json(b"STATUS")["queued"]["messages"]:
            time.sleep(0.05)
        t0 = time.time()
        pri.control(b"SNAPSHOT")
        print("primary SNAPSHOT of %d channels: %.2f s" % (n, time.time() - t0))
        t0 = time.time()
        F.launch(sby, "--standby-of", pri.ctl_ep)
        ready = time.time() - t0
        line = [x for x in F.logtext(sby).splitlines() if "full sync from" in x][0]
        m = re.search(r"\((\d+) bytes\).* in ([0-9.]+) s", line)
        b, sec = int(m.group(1)), float(m.group(2))
        print("full sync: %d channels, %.1f MB in %.2f s = %.0f MB/s, %.0f channels/s; standby answering STATUS "
              "%.2f s after it was started (model load + sync + recovery)" % (n, b / 1e6, sec, b / 1e6 / sec,
                                                                             n / sec, ready))
        F.wait_for("the standby to follow", lambda: F.repl(sby)["next_lsn"] == F.repl(pri)["next_lsn"], 30)
        pri.proc.kill()
        pri.proc.wait()
        t0 = time.time()
        F.wait_for("the takeover", lambda: F.repl(sby)["role"] == "primary", a.failover_ms / 1000 + 30)
        print("takeover %.2f s after SIGKILL (failover_timeout %d ms, heartbeat_interval %d ms)" %
              (time.time() - t0, a.failover_ms, a.heartbeat_ms))
    finally:
        pri.close()
        sby.close()


if __name__ == "__main__":
    main()
