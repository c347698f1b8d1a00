#!/usr/bin/python3
"""GET /metrics over HTTP (metrics.listen, daemon/httpmetrics.c) through the real rwkvd binary.

Usage: test_httpmetrics.py NAME   (NAME = one of the test_* functions below, without the prefix)
Environment as test_rwkvd.py. Exits 77 when this rwkvd was built without libmicrohttpd.

  scrape    GET /metrics answers 200 text/plain version=0.0.4 that promtext.py's strict parser
            accepts, with the same metric families as METRICS on the control socket; after
            events are fed, the ingest and token counters in the scrape move to the new
            values and the step-duration histogram counts every job; HEAD answers
            headers only
  paths     any other path answers 404, POST /metrics 405; the server keeps serving after a
            client that connects and sends nothing
  remote    a non-loopback metrics.listen is refused at start (exit 1, the key named) unless
            metrics.allow_remote: true, and then it serves; a malformed address is refused
"""
import http.client as httpc
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_rwkvd as T  # noqa: E402  (skips with 77 when zmq/numpy are missing)
from test_rwkvd import Daemon, Fail, check, expect_reply, send  # noqa: E402
import promtext  # noqa: E402


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def skip_without_mhd():
    d = Daemon(start=False)
    try:
        d.write_config(extra='metrics:\n  listen: "127.0.0.1:1"\n')
        r = subprocess.run([T.RWKVD, "-c", d.conf, "--check-config"], capture_output=True, text=True)
        if "without libmicrohttpd" in r.stdout + r.stderr:
            print("rwkvd built without libmicrohttpd: skipped")
            sys.exit(77)
    finally:
        d.close()


def http(port, method="GET", path="/metrics", host="127.0.0.1"):
    c = httpc.HTTPConnection(host, port, timeout=10)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read().decode()
    finally:
        c.close()


def metrics_daemon(extra_metrics="", **kw):
    port = free_port()
    d = Daemon(extra='metrics:\n  listen: "127.0.0.1:%d"\n%s' % (port, extra_metrics), **kw)
    return d, port


def scrape(port):
    status, headers, body = http(port)
    check(status == 200, "GET /metrics answered %d: %r" % (status, body[:200]))
    check(headers.get("content-type", "").startswith("text/plain; version=0.0.4"),
          "content type %r" % headers.get("content-type"))
    try:
        return promtext.parse(body), body
    except ValueError as e:
        raise Fail("/metrics is not valid Prometheus text: %s\n%s" % (e, body))


def test_scrape():
    skip_without_mhd()
    d, port = metrics_daemon()
    try:
        fams, body = scrape(port)
        ctl = promtext.parse(d.control(b"METRICS")[1].decode())
        check(set(fams) == set(ctl), "families differ between HTTP and METRICS: %r" % (set(fams) ^ set(ctl)))
        for fam in ("rwkvd_tokens_total", "rwkvd_channels", "rwkvd_publish_dropped_total", "rwkvd_queued_tokens"):
            check(fam in fams, "family %s missing from /metrics" % fam)
        acks0 = promtext.value(fams, "rwkvd_ingest_messages_total", op="TEXT", result="ack") \
            if ("rwkvd_ingest_messages_total", (("op", "TEXT"), ("result", "ack"))) in \
            fams["rwkvd_ingest_messages_total"]["samples"] else 0
        tokens0 = promtext.value(fams, "rwkvd_tokens_total")
        s = d.dealer()
        payload = b"an event for the scrape"
        for seq in range(1, 6):
            send(s, b"TEXT", b"m/one", b"p", seq, payload)
            expect_reply(s, "ACK", seq)
        want_tokens = tokens0 + 5 * (len(payload) + 1)  # each event and its "\n" separator
        deadline = time.time() + 20
        while True:
            fams, body = scrape(port)
            samples = fams["rwkvd_ingest_messages_total"]["samples"]
            acks = samples.get(("rwkvd_ingest_messages_total", (("op", "TEXT"), ("result", "ack"))), 0)
            tokens = promtext.value(fams, "rwkvd_tokens_total")
            if acks == acks0 + 5 and tokens >= want_tokens:
                break
            check(time.time() < deadline, "the scrape did not move: acks %r (want %r), tokens %r (want >= %r)\n%s"
                  % (acks, acks0 + 5, tokens, want_tokens, body))
            time.sleep(0.1)
        check(promtext.value(fams, "rwkvd_channels", tier="resident") >= 1, "no resident channel:\n" + body)
        steps = promtext.value(fams, "rwkvd_steps_total")
        check(steps >= 1 and promtext.value(fams, "rwkvd_step_duration_seconds_count") == steps,
              "step histogram count %r vs rwkvd_steps_total %r" % (
                  promtext.value(fams, "rwkvd_step_duration_seconds_count"), steps))
        status, headers, hbody = http(port, "HEAD")
        check(status == 200 and hbody == "", "HEAD /metrics: %d %r" % (status, hbody[:100]))
        check("rwkvd_tokens_total" in d.control(b"METRICS")[1].decode(), "METRICS on the control socket")
        check(d.stop() == 0, "rwkvd exit status after SIGTERM")
    finally:
        d.close()


def test_paths():
    skip_without_mhd()
    d, port = metrics_daemon()
    try:
        idle = socket.create_connection(("127.0.0.1", port))  # connects and says nothing
        for path in ("/", "/metric", "/metrics/", "/metrics/x", "/favicon.ico"):
            status, _, body = http(port, path=path)
            check(status == 404, "GET %s answered %d, expected 404" % (path, status))
        status, headers, _ = http(port, "POST")
        check(status == 405 and "GET" in headers.get("allow", ""), "POST /metrics: %d %r" % (status, headers))
        status, _, body = http(port)
        check(status == 200 and "rwkvd_tokens_total" in body, "GET /metrics beside an idle client: %d" % status)
        idle.close()
        check(d.stop() == 0, "rwkvd exit status after SIGTERM")
    finally:
        d.close()


def start_fails(d, what):
    r = subprocess.run([T.RWKVD, "-c", d.conf], capture_output=True, text=True, timeout=30)
    out = r.stdout + r.stderr
    check(r.returncode == 1, "%s: rwkvd exit status %r, expected 1:\n%s" % (what, r.returncode, out))
    return out


def test_remote():
    skip_without_mhd()
    port = free_port()
    d = Daemon(start=False)
    try:
        d.write_config(extra='metrics:\n  listen: "0.0.0.0:%d"\n' % port)
        out = start_fails(d, "0.0.0.0 without allow_remote")
        check("metrics.listen" in out and "metrics.allow_remote" in out and "loopback" in out,
              "the refusal does not name the key and the way out:\n" + out)
        with socket.socket() as probe:
            check(probe.connect_ex(("127.0.0.1", port)) != 0, "something listens on the refused port")
        d.write_config(extra='metrics:\n  listen: "[::]:%d"\n' % port)
        start_fails(d, "[::] without allow_remote")
        for bad, why in (("127.0.0.1", "missing port"), ("127.0.0.1:99999", "bad port"),
                         ("example.org:9464", "bad host"), ("::1:9464", "brackets")):
            d.write_config(extra='metrics:\n  listen: "%s"\n' % bad)
            out = start_fails(d, bad)
            check(why in out and "metrics.listen" in out, "%s: message %r lacks %r" % (bad, out, why))
        d.write_config(extra='metrics:\n  listen: "0.0.0.0:%d"\n  allow_remote: true\n' % port)
        d.start()
        status, _, body = http(port)
        check(status == 200 and "rwkvd_tokens_total" in body, "0.0.0.0 with allow_remote: %d" % status)
        check("not a loopback address" in d.logtext(), "no warning about the open port:\n" + d.logtext())
        check(d.stop() == 0, "rwkvd exit status after SIGTERM")
    finally:
        d.close()


if __name__ == "__main__":
    T.run_named(globals(), "test_httpmetrics.py")
