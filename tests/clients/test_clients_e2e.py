#!/usr/bin/env python3
"""End to end: the real rwkvd with the clients (suite integration).

Starts rwkvd on free tcp://127.0.0.1 ports with a generated config (the build's default
byte-level model, a label-scoring profile and a continuation profile), then:
  rwkvcat | rwkvd | rwkvsub   one CLASS per line, seqs 1..N, tokens_seen growing by line+1;
  rwkvcat again with -s 1     every line answered DUP (nothing applied twice);
  rwkvcat --gen               TEXT pieces and one END with n_tokens = max_tokens;
  rwkvctl                     status/channels/info/metrics, exit 14 for an unknown channel;
  the Python example, and the Python client's EXPORT / IMPORT / FORK.
Every step has a timeout; the whole test takes a few seconds.
usage: test_clients_e2e.py MODEL.pth
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

RWKVD, RWKVCAT, RWKVSUB, RWKVCTL = (os.environ[k] for k in ("RWKVD", "RWKVCAT", "RWKVSUB", "RWKVCTL"))
PYDIR = os.environ["RWKVD_PYTHON"]
PY = os.environ.get("PYTHON3") or sys.executable
failures = 0


def check(cond, what):
    global failures
    print(("ok: " if cond else "FAIL: ") + what, flush=True)
    if not cond:
        failures += 1


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run(args, stdin=b"", timeout=20, env=None):
    p = subprocess.run(args, input=stdin, capture_output=True, timeout=timeout, env=env)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def main():
    model = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="rwkvd-e2e.")
    pi, pp, pc = free_ports(3)
    ing, pub, ctl = ("tcp://127.0.0.1:%d" % p for p in (pi, pp, pc))
    conf = os.path.join(tmp, "rwkvd.yaml")
    with open(conf, "w") as f:
        f.write("""model:
  path: %s
  threads: 1
  state_slots: 16
  max_batch: 8
endpoints:
  ingest: %s
  publish: %s
  control: %s
state_dir: %s
log:
  level: notice
tasks:
  default_profile: severity
  profiles:
    severity:
      kind: classify_labels
      prompt_suffix: " level:"
      labels:
        - {name: error, text: " error"}
        - {name: info, text: " info"}
    chat:
      kind: continue
      trigger: request
      generate:
        max_tokens: 5
        temperature: 0
""" % (model, ing, pub, ctl, os.path.join(tmp, "state")))
    log = open(os.path.join(tmp, "rwkvd.log"), "wb")
    d = subprocess.Popen([RWKVD, "-c", conf], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        rc = None
        while time.monotonic() < deadline and d.poll() is None:
            rc, out, err = run([RWKVCTL, "-e", ctl, "-t", "500ms", "--json", "status"])
            if rc == 0:
                break
            time.sleep(0.1)
        check(rc == 0, "rwkvd answers rwkvctl status")
        if rc != 0:
            return
        st = json.loads(out)
        check(st["daemon"] == "rwkvd" and st["protocol"] == [1] and st["pid"] == d.pid, "status body")

        lines = ["GET /index.html 200", "disk full on /dev/sda1", "user login ok", "timeout talking to db"]
        sub = subprocess.Popen([RWKVSUB, "-e", pub, "-c", "e2e/", "-k", "CLASS", "-n", str(len(lines)), "-t", "20s"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.5)  # the subscription must reach rwkvd first (§9.6)
        state = os.path.join(tmp, "seq")
        data = "".join(l + "\n" for l in lines).encode()
        rc, _, err = run([RWKVCAT, "-e", ing, "-c", "e2e/log", "-S", state, "--drain-timeout", "15s"], stdin=data)
        check(rc == 0, "rwkvcat: %d lines acknowledged (%d %s)" % (len(lines), rc, err.strip()))
        out, err = sub.communicate(timeout=25)
        got = [json.loads(l) for l in out.decode().splitlines()]
        check(sub.returncode == 0 and len(got) == len(lines), "rwkvsub: one CLASS per line (%s)" % err.decode().strip())
        check([g["seq"] for g in got] == [1, 2, 3, 4], "CLASS seqs are the lines' seqs")
        seen = [g["tokens_seen"] for g in got]
        want, t = [], 0
        for l in lines:  # byte-level vocabulary: one token per byte, plus the "\n" separator
            t += len(l.encode()) + 1
            want.append(t)
        check(seen == want, "tokens_seen counts bytes + separator (%r vs %r)" % (seen, want))
        check(all(abs(sum(g["body"]["probs"]) - 1) < 1e-4 and g["body"]["labels"] == ["error", "info"] for g in got),
              "probabilities over the labels sum to 1")

        # replay the same lines as the same producer from seq 1: all duplicates
        prod = [l.split(" ", 1)[1] for l in open(state).read().splitlines() if l.startswith("producer ")][0]
        rc, _, err = run([RWKVCAT, "-e", ing, "-c", "e2e/log", "-p", prod, "-s", "1", "-v"], stdin=data)
        rc2, out, _ = run([RWKVCTL, "-e", ctl, "--json", "info", "e2e/log"])
        info = json.loads(out) if rc2 == 0 else {}
        check(rc == 0 and info.get("tokens_seen") == want[-1], "replay with -s 1: DUPs, nothing applied twice")
        check({"id": prod, "acked": 4} in info.get("producers", []), "info lists the producer's acked seq")

        # a continuation: TEXT pieces then END with 5 tokens (greedy)
        sub = subprocess.Popen([RWKVSUB, "-e", pub, "-c", "e2e/chat", "-k", "END", "-n", "1", "-t", "20s"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.5)
        rc, _, err = run([RWKVCAT, "-e", ing, "-c", "e2e/chat", "--task", "chat", "--gen", '{"max_tokens":5}'],
                         stdin=b"User: hello\n")
        out, _ = sub.communicate(timeout=25)
        end = [json.loads(l) for l in out.decode().splitlines()]
        check(rc == 0 and len(end) == 1 and end[0]["body"]["n_tokens"] == 5 and end[0]["seq"] == 3,
              "rwkvcat --gen: END after 5 tokens for the GEN's seq (%r)" % end)

        rc, out, _ = run([RWKVCTL, "-e", ctl, "--json", "channels", "e2e/"])
        names = [c["name"] for c in json.loads(out)["channels"]] if rc == 0 else []
        check(names == ["e2e/chat", "e2e/log"], "rwkvctl --json channels e2e/")
        rc, out, _ = run([RWKVCTL, "-e", ctl, "channels", "e2e/"])
        rows = [l.split() for l in out.splitlines()]
        check(rc == 0 and rows[0] == ["NAME", "TIER", "TOKENS_SEEN", "QUEUED_TOKENS", "OSEQ"] and
              [r[0] for r in rows[1:]] == ["e2e/chat", "e2e/log"] and rows[2][2] == str(want[-1]),
              "rwkvctl channels e2e/: a table (%r)" % rows)
        rc, out, _ = run([RWKVCTL, "-e", ctl, "info", "e2e/log"])
        kv = dict(l.split(":", 1) for l in out.splitlines() if not l.startswith(" "))
        check(rc == 0 and kv["tokens_seen"].strip() == str(want[-1]) and kv["tier"].strip() == "resident",
              "rwkvctl info: key: value lines (%r)" % out)
        rc, out, err = run([RWKVCTL, "-e", ctl, "info", "e2e/nope"])
        check(rc == 14 and "404" in err, "rwkvctl info of an unknown channel: exit 14")
        rc, out, _ = run([RWKVCTL, "-e", ctl, "metrics"])
        check(rc == 0 and 'rwkvd_ingest_messages_total{op="TEXT",result="dup"} 4' in out,
              "rwkvctl metrics: the 4 duplicates are counted")
        rc, out, _ = run([RWKVCTL, "-e", ctl, "--json", "reset", "e2e/log"])
        check(rc == 0 and json.loads(out)["tokens_seen"] == 0, "rwkvctl reset")

        env = dict(os.environ, PYTHONPATH=PYDIR)
        rc, out, err = run([PY, os.path.join(PYDIR, "example.py"), ing, pub, ctl], timeout=30, env=env)
        check(rc == 0 and out.count("CLASS") == 3 and out.splitlines()[-1].startswith("200 "),
              "python example (%d %s)" % (rc, err.strip()[-300:]))

        # the Python client's state portability: export, import under a new name, fork
        sys.path.insert(0, PYDIR)
        import rwkvd_client
        with rwkvd_client.Control(ctl, timeout=10) as c:
            st, log_info = c.command("INFO", "e2e/chat")
            image = c.export("e2e/chat")
            check(st == 200 and len(image) > 0 and image[:4] != b"\0\0\0\0", "Control.export returns the image")
            body = c.import_state("e2e/copy", image)
            check(body.get("name") == "e2e/copy", "Control.import_state (%r)" % body)
            c.fork("e2e/chat", "e2e/forked")
            for name in ("e2e/copy", "e2e/forked"):
                st, inf = c.command("INFO", name)
                check(st == 200 and inf["tokens_seen"] == log_info["tokens_seen"],
                      "%s has the source's tokens_seen (%r)" % (name, inf))
            # (state equality of imports and forks is proven in tests/daemon/test_durable.py;
            # here the client's wiring: the copies export images of the source's size)
            a, b = c.export("e2e/copy"), c.export("e2e/forked")
            check(abs(len(a) - len(image)) < 64 and abs(len(b) - len(image)) < 64, "exported sizes match")
            bad = bytearray(image)
            bad[len(bad) // 2] ^= 0xFF
            try:
                c.import_state("e2e/bad", bytes(bad))
                check(False, "a damaged image is refused")
            except rwkvd_client.CommandError as e:
                check(e.status == 400, "a damaged image gets 400 (%s)" % e)
            try:
                c.fork("e2e/none", "e2e/x")
                check(False, "FORK of an unknown channel is refused")
            except rwkvd_client.CommandError as e:
                check(e.status == 404, "FORK of an unknown channel gets 404 (%s)" % e)
    finally:
        d.send_signal(signal.SIGTERM)
        try:
            d.wait(15)
        except subprocess.TimeoutExpired:
            d.kill()
            check(False, "rwkvd stops within 15 s of SIGTERM")
        log.close()
        if failures:
            sys.stdout.write(open(os.path.join(tmp, "rwkvd.log")).read()[-3000:])


if __name__ == "__main__":
    t0 = time.monotonic()
    main()
    print("%d failure(s) in %.1fs" % (failures, time.monotonic() - t0))
    sys.exit(1 if failures else 0)
