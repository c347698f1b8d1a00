#!/usr/bin/env python3
"""Feed three log lines to a channel, print what rwkvd publishes for them, then its status.
Usage: example.py [INGEST PUBLISH CONTROL] (default: the endpoints of conf/rwkvd.yaml)."""
import sys
import time

from rwkvd_client import Control, Producer, Subscriber

ingest, publish, control = sys.argv[1:4] if len(sys.argv) >= 4 else (None, None, None)
lines = ["GET /index.html 200", "disk /dev/sda1 is 99% full", "GET /health 200"]
with Subscriber(publish, prefixes=["example/"]) as sub, Producer(ingest) as prod:
    time.sleep(0.5)  # let the subscription reach rwkvd first (slow joiner, PROTOCOL.md §9.6)
    prod.task("example/log", "severity")  # classify each line (a profile of conf/rwkvd.yaml)
    for line in lines:
        prod.send_text("example/log", line)
    prod.flush(timeout=10)  # every line acknowledged
    for _ in lines:
        pub = sub.recv(timeout=10)
        if pub is None:
            sys.exit("no classification within 10 s")
        print(pub.seq, pub.kind, pub.body["top"], pub.body["probs"])
with Control(control) as ctl:
    status, body = ctl.command("STATUS")
    print(status, body["channels"], body["tokens_total"])
