#!/bin/bash
# test_container.sh SRCDIR — the Debian packages under a real systemd, as an operator runs them.
#
# 1. Builds the .deb files of SRCDIR (build-deb.sh; reused while the tree is unchanged) into
#    $CACHE/debs, CACHE=${RWKVD_TEST_CACHE:-/var/cache/rwkvd-test}.
# 2. Boots a Debian bookworm (debootstrap --variant=minbase, cached as a tarball in $CACHE and
#    unpacked once) with systemd-nspawn --volatile=overlay (nothing it writes survives), the
#    packages bind-mounted read-only at /debs.
# 3. Inside, with `nsenter -t PID -a`: apt installs rwkvd, rwkvd-clients and librwkv0 (the
#    runtime dependencies come from Debian's archive), librwkv-dev and python3-rwkvd; then
#    checks that the module imports and the development files are there, and that
#      - the service is active (READY) on the packaged default model;
#      - rwkvcat's event is acknowledged and rwkvsub sees its CLASS publication;
#      - `systemctl reload` applies a changed reloadable key (STATUS channels.limit), and a
#        bad config is refused (logged) while the service keeps running;
#      - kill -9 of the main PID: systemd restarts it and the channel's exported state is the
#        same byte for byte;
#      - a hung step (fault hook RWKVD_TEST_STEP_DELAY_MS, WatchdogSec=3s in a drop-in) makes
#        the watchdog kill and restart it;
#      - `systemctl stop` writes the channel snapshots;
#      - GET /metrics (metrics.listen) parses as Prometheus text (tests/daemon/promtext.py;
#        Debian has no promtool in bookworm main) and counts the events;
#      - `systemd-analyze security rwkvd` exposure <= 2.0;
#      - `apt-get remove` keeps the states, the configuration and the user, and
#        `apt-get purge` leaves no unit, user, group or file behind.
# 4. Powers the container off (SIGRTMIN+4, then SIGKILL) whatever happened.
# Prints each step with its time; the scrape and the logs stay in $CACHE/last-run.
# Exit 0 pass, 1 fail, 77 skip (not root, no systemd-nspawn/debootstrap, offline, no build
# dependencies, or nspawn cannot boot here).
set -u
src=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
CACHE=${RWKVD_TEST_CACHE:-/var/cache/rwkvd-test}
ROOTTAR=$CACHE/bookworm-minbase.tar.gz
ROOT=$CACHE/bookworm-root
RUN=$CACHE/last-run
PY=/usr/bin/python3
T0=$(date +%s.%N)
SUMMARY=()

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; [ -n "${PID:-}" ] && dump_journal; exit 1; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
# step NAME FUNCTION: run it, print and remember its time
step() {
    local t=$(date +%s.%N)
    echo "---- $1"
    "$2" || fail "$1"
    local s="$1: $(elapsed "$t") s"
    SUMMARY+=("$s")
    echo "ok   $s"
}

[ "$(id -u)" = 0 ] || skip "needs root (systemd-nspawn, nsenter)"
for c in systemd-nspawn nsenter pgrep tar; do
    command -v $c >/dev/null 2>&1 || skip "$c not found (apt install systemd-container)"
done
[ -x $PY ] || skip "$PY not found"
mkdir -p "$CACHE" "$RUN" || skip "cannot create $CACHE"
# one run at a time per cache (the packages, the image and last-run are shared)
exec 9> "$CACHE/lock"
command -v flock >/dev/null 2>&1 && flock 9
rm -f "$RUN"/*

# ---- the packages and the image (cached) ---------------------------------------------------
get_debs() {
    "$here/build-deb.sh" "$src" "$CACHE/debs"
    local rc=$?
    [ $rc = 77 ] && skip "cannot build the packages here"
    return $rc
}
get_image() {
    if [ ! -f "$ROOT/.rwkvd-complete" ]; then
        if [ ! -f "$ROOTTAR" ]; then
            command -v debootstrap >/dev/null 2>&1 || skip "debootstrap not found and no $ROOTTAR"
            local tmp="$CACHE/root-build.$$"
            if ! debootstrap --variant=minbase --include=systemd,dbus,procps bookworm "$tmp" \
                    http://deb.debian.org/debian > "$RUN/debootstrap.log" 2>&1; then
                rm -rf "$tmp"
                skip "debootstrap failed (offline?): see $RUN/debootstrap.log"
            fi
            tar -C "$tmp" -czf "$ROOTTAR.part" . && mv "$ROOTTAR.part" "$ROOTTAR"
            rm -rf "$tmp"
        fi
        rm -rf "$ROOT" && mkdir -p "$ROOT" && tar -C "$ROOT" -xzf "$ROOTTAR" && touch "$ROOT/.rwkvd-complete" \
            || { rm -rf "$ROOT"; fail "cannot unpack $ROOTTAR"; }
    fi
}
step "build the packages (build-deb.sh, cached per tree)" get_debs
step "bookworm image (debootstrap, cached)" get_image

# ---- the container ---------------------------------------------------------------------------
MACHINE=rwkvd-test-$$
NSPAWN=""
PID=""
poweroff() {
    [ -n "$NSPAWN" ] || return 0
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -s SIGRTMIN+4 "$PID" 2>/dev/null
    fi
    for _ in $(seq 1 100); do
        kill -0 "$NSPAWN" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$NSPAWN" 2>/dev/null; then
        kill -9 "$NSPAWN" 2>/dev/null
        [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
    fi
    wait "$NSPAWN" 2>/dev/null
    NSPAWN=""
}
trap poweroff EXIT
trap 'exit 1' INT TERM

cin() { nsenter -t "$PID" -a "$@"; }
insh() { nsenter -t "$PID" -a /bin/sh -c "$1"; }
dump_journal() { cin journalctl -u rwkvd --no-pager -n 60 2>/dev/null | tail -60; }
# wait_for SECONDS SHELL-CONDITION (run inside)
wait_for() {
    local end=$(( $(date +%s) + $1 ))
    while [ "$(date +%s)" -le $end ]; do
        insh "$2" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "timed out after $1 s waiting for: $2"
    return 1
}

boot() {
    systemd-nspawn -q --volatile=overlay -D "$ROOT" -M "$MACHINE" -b --register=no --keep-unit \
        --bind-ro="$CACHE/debs:/debs" > "$RUN/console.log" 2>&1 &
    NSPAWN=$!
    for _ in $(seq 1 100); do
        PID=$(pgrep -x -P "$NSPAWN" systemd | head -1)
        [ -n "$PID" ] && break
        kill -0 "$NSPAWN" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$PID" ] || { cat "$RUN/console.log"; NSPAWN=""; skip "systemd-nspawn could not boot a container here"; }
    for _ in $(seq 1 200); do
        [ -S "/proc/$PID/root/run/systemd/private" ] && break
        sleep 0.1
    done
    [ -S "/proc/$PID/root/run/systemd/private" ] || { echo "no /run/systemd/private"; return 1; }
    state=$(cin systemctl is-system-running --wait 2>&1)
    echo "system state: $state"
    case "$state" in running|degraded) return 0 ;; *) return 1 ;; esac
}
step "boot bookworm under systemd-nspawn" boot

install_pkgs() {
    if ! insh 'apt-get update -q' > "$RUN/apt-update.log" 2>&1; then
        tail -5 "$RUN/apt-update.log"
        skip "apt-get update failed inside the container (offline?)"
    fi
    insh 'DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends /debs/rwkvd_*.deb \
          /debs/rwkvd-clients_*.deb /debs/librwkv0_*.deb /debs/librwkv-dev_*.deb /debs/python3-rwkvd_*.deb' \
          > "$RUN/apt-install.log" 2>&1 || { tail -20 "$RUN/apt-install.log"; return 1; }
    grep -E '^(Setting up|Created symlink)' "$RUN/apt-install.log" | sed 's/^/    /'
}
step "apt install ./rwkvd_*.deb ./rwkvd-clients_*.deb ./librwkv0_*.deb ./librwkv-dev_*.deb ./python3-rwkvd_*.deb" install_pkgs

others() {
    insh 'python3 -c "import rwkvd_client; print(\"    python3-rwkvd:\", rwkvd_client.__file__)"' || return 1
    insh 'ls /usr/lib/*/pkgconfig/rwkv.pc /usr/include/rwkv.h /usr/lib/*/librwkv.so /usr/lib/*/librwkv.so.0 |
          sed "s/^/    /"'
}
step "python3-rwkvd imports; librwkv-dev has rwkv.h, librwkv.so and rwkv.pc" others

active() {
    wait_for 30 'systemctl is-active -q rwkvd' || { cin systemctl status rwkvd --no-pager; return 1; }
    cin systemctl is-enabled rwkvd | grep -qx enabled || { echo "not enabled"; return 1; }
    cin getent passwd rwkvd >/dev/null || { echo "no rwkvd user"; return 1; }
    insh 'rwkvctl -j status' > "$RUN/status.json" || return 1
    grep -q '"/usr/share/rwkvd/default-model.pth"' "$RUN/status.json" || { cat "$RUN/status.json"; return 1; }
}
step "systemctl is-active rwkvd after READY, on the packaged default model" active

event() {
    insh 'rm -f /tmp/sub.out; (timeout 30 rwkvsub > /tmp/sub.out 2>&1 &) ; sleep 0.5
          echo "disk full on /var/lib/postgresql" | rwkvcat -c demo --task severity -v' > "$RUN/rwkvcat.log" 2>&1 \
        || { cat "$RUN/rwkvcat.log"; return 1; }
    wait_for 20 'grep -q "\"demo\"" /tmp/sub.out && grep -q CLASS /tmp/sub.out' || { insh 'cat /tmp/sub.out'; return 1; }
    insh 'grep -m1 CLASS /tmp/sub.out' | cut -c1-200 | sed 's/^/    /'
    insh 'rwkvctl -j info demo' | grep -q '"tokens_seen"' || return 1
}
step "rwkvcat event: ACK and a CLASS publication (rwkvsub)" event

reload() {
    insh 'cp /etc/rwkvd/rwkvd.yaml /tmp/rwkvd.yaml.orig &&
          sed -i "s/^  max_channels: 1024$/  max_channels: 777/" /etc/rwkvd/rwkvd.yaml &&
          grep -q "^  max_channels: 777" /etc/rwkvd/rwkvd.yaml && systemctl reload rwkvd' || return 1
    wait_for 10 'rwkvctl -j status | grep -q "\"limit\": *777"' || { insh 'rwkvctl -j status'; return 1; }
    local main=$(cin systemctl show -p MainPID --value rwkvd)
    insh 'echo "this: is: not yaml" >> /etc/rwkvd/rwkvd.yaml; systemctl reload rwkvd' || return 1
    wait_for 10 'journalctl -u rwkvd --no-pager | grep -q "reload refused"' \
        || { dump_journal; return 1; }
    cin systemctl is-active -q rwkvd || return 1
    [ "$(cin systemctl show -p MainPID --value rwkvd)" = "$main" ] || { echo "the bad config restarted it"; return 1; }
    insh 'rwkvctl -j status | grep -q "\"limit\": *777"' || return 1
    insh 'cp /tmp/rwkvd.yaml.orig /etc/rwkvd/rwkvd.yaml && systemctl reload rwkvd' || return 1
    wait_for 10 'rwkvctl -j status | grep -q "\"limit\": *1024"'
}
step "systemctl reload: a changed key applies, a bad config is refused and it keeps running" reload

kill9() {
    insh 'rwkvctl export demo /tmp/before.img >/dev/null' || return 1
    local main=$(cin systemctl show -p MainPID --value rwkvd)
    cin kill -9 "$main" || return 1
    wait_for 30 "[ \"\$(systemctl show -p MainPID --value rwkvd)\" != \"$main\" ] && [ \"\$(systemctl show -p MainPID --value rwkvd)\" != 0 ] && systemctl is-active -q rwkvd && rwkvctl status" \
        || { dump_journal; return 1; }
    echo "    restarted: MainPID $main -> $(cin systemctl show -p MainPID --value rwkvd), NRestarts $(cin systemctl show -p NRestarts --value rwkvd)"
    # equal but for created_ns (bytes 72..79, FORMATS.md §snapshot) and the CRC over it (last 4)
    insh 'rwkvctl export demo /tmp/after.img >/dev/null && n=$(wc -c < /tmp/before.img) &&
          [ "$n" = "$(wc -c < /tmp/after.img)" ] && cmp -n 72 /tmp/before.img /tmp/after.img &&
          cmp -i 80 -n $((n - 84)) /tmp/before.img /tmp/after.img' || return 1
    echo "    exported state identical ($(insh 'wc -c < /tmp/after.img') bytes; only created_ns and the CRC differ)"
}
step "kill -9: restarted by systemd, channel state recovered (export equal)" kill9

watchdog() {
    local restarts=$(cin systemctl show -p NRestarts --value rwkvd)
    insh 'mkdir -p /run/systemd/system/rwkvd.service.d && printf "[Service]\nWatchdogSec=3s\nEnvironment=RWKVD_TEST_STEP_DELAY_MS=8000\n" \
            > /run/systemd/system/rwkvd.service.d/hang.conf &&
          sed -i "s/^  step_timeout: 60s$/  step_timeout: 1s/" /etc/rwkvd/rwkvd.yaml &&
          grep -q "^  step_timeout: 1s" /etc/rwkvd/rwkvd.yaml &&
          systemctl daemon-reload && systemctl restart rwkvd' || return 1
    restarts=$(cin systemctl show -p NRestarts --value rwkvd)
    insh '(echo "a step that hangs" | timeout 20 rwkvcat -c hang > /dev/null 2>&1 &)'
    wait_for 40 "journalctl -u rwkvd --no-pager | grep -q -i 'watchdog timeout' && [ \$(systemctl show -p NRestarts --value rwkvd) -gt $restarts ]" \
        || { dump_journal; return 1; }
    cin journalctl -u rwkvd --no-pager | grep -i -m1 'watchdog timeout' | sed 's/^/    /'
    insh 'rm -f /run/systemd/system/rwkvd.service.d/hang.conf && cp /tmp/rwkvd.yaml.orig /etc/rwkvd/rwkvd.yaml &&
          systemctl daemon-reload && systemctl restart rwkvd' || return 1
    wait_for 30 'systemctl is-active -q rwkvd && rwkvctl status'
}
step "a hung step: the watchdog kills and restarts it" watchdog

stopsnap() {
    insh 'echo "one more line" | rwkvcat -c demo > /dev/null && touch /tmp/stopmark && sleep 1.1 && systemctl stop rwkvd' || return 1
    local n=$(insh 'find /var/lib/rwkvd -type f -newer /tmp/stopmark -path "*snap*" | wc -l')
    echo "    snapshot files written at stop: $n"
    cin journalctl -u rwkvd --no-pager | grep -m1 "shutdown snapshot" | sed 's/^/    /'
    [ "$n" -ge 1 ] || { insh 'ls -lR /var/lib/rwkvd'; return 1; }
    cin systemctl start rwkvd && wait_for 30 'systemctl is-active -q rwkvd'
}
step "systemctl stop writes the snapshots" stopsnap

metrics() {
    local port
    port=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # the scrape is rendered every service.status_interval: 1s instead of 5s here
    insh "sed -i 's/^  listen: \"\"\$/  listen: \"127.0.0.1:$port\"/; s/^  status_interval: 5s\$/  status_interval: 1s/' /etc/rwkvd/rwkvd.yaml &&
          grep -q '^  listen: \"127.0.0.1:$port\"' /etc/rwkvd/rwkvd.yaml && systemctl restart rwkvd" || return 1
    wait_for 30 'systemctl is-active -q rwkvd && rwkvctl status' || return 1
    insh 'echo "an event to count" | rwkvcat -c demo > /dev/null' || return 1
    # the container shares the host's network: scrape from here with the strict parser
    local ok=""
    for _ in $(seq 1 50); do
        if $PY - "$port" "$RUN/metrics.txt" "$here/../daemon" 2> "$RUN/scrape.err" <<'EOF'
import sys, urllib.request
sys.path.insert(0, sys.argv[3])
import promtext
with urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5) as r:
    ctype, body = r.headers.get("Content-Type"), r.read().decode()
open(sys.argv[2], "w").write(body)
fams = promtext.parse(body)
assert ctype.startswith("text/plain; version=0.0.4"), ctype
assert promtext.value(fams, "rwkvd_tokens_total") > 0, "rwkvd_tokens_total is 0"
print("    %d families, %d series, content type %s" % (len(fams), sum(len(f["samples"]) for f in fams.values()), ctype))
EOF
        then ok=1; break; fi
        sleep 0.2
    done
    [ -n "$ok" ] || { tail -5 "$RUN/scrape.err"; return 1; }
    insh "cp /tmp/rwkvd.yaml.orig /etc/rwkvd/rwkvd.yaml"
}
step "curl /metrics (metrics.listen) parses as Prometheus text" metrics

security() {
    cin systemd-analyze security rwkvd --no-pager > "$RUN/security.txt" 2>&1
    local score
    score=$(sed -n 's/.*Overall exposure level for rwkvd.service: \([0-9.]*\).*/\1/p' "$RUN/security.txt")
    echo "    exposure: ${score:-?}"
    [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'
}
step "systemd-analyze security rwkvd: exposure <= 2.0" security

purge() {
    # remove keeps the states, the configuration and the user; purge takes them
    insh 'DEBIAN_FRONTEND=noninteractive apt-get remove -y -q rwkvd' > "$RUN/apt-remove.log" 2>&1 \
        || { tail -20 "$RUN/apt-remove.log"; return 1; }
    insh '! systemctl is-active -q rwkvd && ls /var/lib/rwkvd/snapshots/* >/dev/null && test -f /etc/rwkvd/rwkvd.yaml &&
          getent passwd rwkvd >/dev/null' || { echo "apt-get remove did not keep the data, the config or the user"; return 1; }
    insh 'DEBIAN_FRONTEND=noninteractive apt-get purge -y -q rwkvd rwkvd-clients librwkv0 librwkv-dev python3-rwkvd' > "$RUN/apt-purge.log" 2>&1 \
        || { tail -20 "$RUN/apt-purge.log"; return 1; }
    local left
    left=$(insh 'ls -d /lib/systemd/system/rwkvd.service /usr/lib/systemd/system/rwkvd.service \
                    /etc/systemd/system/multi-user.target.wants/rwkvd.service /etc/rwkvd /var/lib/rwkvd \
                    /run/rwkvd /usr/share/rwkvd /usr/sbin/rwkvd /usr/lib/sysusers.d/rwkvd.conf \
                    /usr/lib/tmpfiles.d/rwkvd.conf 2>/dev/null; getent passwd rwkvd; getent group rwkvd;
                 systemctl list-unit-files rwkvd.service --no-legend 2>/dev/null | grep rwkvd')
    [ -z "$left" ] || { echo "left behind after purge:"; echo "$left"; return 1; }
}
step "apt-get remove keeps states, config and user; apt-get purge leaves no unit, user, group or file" purge

poweroff
echo
echo "container test passed in $(elapsed "$T0") s:"
printf '  %s\n' "${SUMMARY[@]}"
exit 0
