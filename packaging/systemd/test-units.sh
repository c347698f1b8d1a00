#!/bin/sh
# test-units.sh UNIT SYSUSERS TMPFILES EXEC — check the systemd files of packaging/systemd.
#
# 1. `systemd-analyze verify` on a copy of UNIT whose ExecStart runs EXEC (the built rwkvd,
#    or /bin/true in an engine-only build). verify exits 0 even for unknown directives and
#    only prints them, so any output line is an error unless it is known container noise.
# 2. The same check on a copy with a misspelt directive must fail: proves step 1 can fail.
# 3. SYSUSERS through `systemd-sysusers --dry-run`, TMPFILES through `systemd-tmpfiles
#    --create` under a scratch --root (the latter as root only: it chowns).
# Exit 77 (skip) when systemd-analyze is not installed.
set -u
unit=$1 sysusers=$2 tmpfiles=$3 exec_path=$4
command -v systemd-analyze >/dev/null 2>&1 || { echo "systemd-analyze not found: skipped"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rwkvd-units.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0

# Container noise: no system bus, no cgroup/kernel features. Everything else counts.
noise='Failed to (connect to|create) .*bus|Failed to open /dev/tty|cgroup|Operation not permitted'

# verify FILE: 0 when systemd-analyze accepts it without a complaint.
verify() {
    out=$(systemd-analyze verify --man=no "$1" 2>&1)
    rc=$?
    complaints=$(printf '%s\n' "$out" | grep -v -E "$noise" | grep -v '^$')
    if [ $rc -ne 0 ] || [ -n "$complaints" ]; then
        printf '%s\n' "$complaints" | sed 's/^/    /'
        return 1
    fi
    return 0
}

sed "s|^ExecStart=/usr/bin/rwkvd |ExecStart=$exec_path |" "$unit" > "$tmp/rwkvd.service"
grep -q "^ExecStart=$exec_path " "$tmp/rwkvd.service" || { echo "FAIL: no 'ExecStart=/usr/bin/rwkvd ' line in $unit"; exit 1; }
if verify "$tmp/rwkvd.service"; then
    echo "ok: systemd-analyze verify rwkvd.service (ExecStart=$exec_path)"
else
    echo "FAIL: systemd-analyze verify rwkvd.service"
    fail=1
fi

mkdir "$tmp/broken"
sed 's/^ProtectHome=/ProtectHomme=/' "$tmp/rwkvd.service" > "$tmp/broken/rwkvd.service"
if verify "$tmp/broken/rwkvd.service" >/dev/null; then
    echo "FAIL: a misspelt directive (ProtectHomme=) was not detected"
    fail=1
else
    echo "ok: a misspelt directive is detected"
fi

for key in Type=notify NotifyAccess=main WatchdogSec= Restart=on-failure StateDirectory=rwkvd \
           RuntimeDirectory=rwkvd ConfigurationDirectory=rwkvd User=rwkvd DeviceAllow=/dev/nvidiactl; do
    grep -q "^$key" "$unit" || { echo "FAIL: $unit lacks $key"; fail=1; }
done

if command -v systemd-sysusers >/dev/null 2>&1; then
    mkdir -p "$tmp/root/etc"
    out=$(systemd-sysusers --dry-run --root="$tmp/root" "$(cd "$(dirname "$sysusers")" && pwd)/$(basename "$sysusers")" 2>&1)
    rc=$?
    bad=$(printf '%s\n' "$out" | grep -E -i 'unknown|ignoring|failed|invalid')
    if [ $rc -ne 0 ] || [ -n "$bad" ]; then
        echo "FAIL: systemd-sysusers --dry-run rwkvd.sysusers:"; printf '%s\n' "$out" | sed 's/^/    /'; fail=1
    else
        echo "ok: systemd-sysusers accepts rwkvd.sysusers"
    fi
    if [ "$(id -u)" = 0 ] && command -v systemd-tmpfiles >/dev/null 2>&1; then
        systemd-sysusers --root="$tmp/root" "$(cd "$(dirname "$sysusers")" && pwd)/$(basename "$sysusers")" >/dev/null 2>&1
        out=$(systemd-tmpfiles --root="$tmp/root" --create "$(cd "$(dirname "$tmpfiles")" && pwd)/$(basename "$tmpfiles")" 2>&1)
        rc=$?
        if [ $rc -ne 0 ] || [ -n "$out" ] || [ ! -d "$tmp/root/var/lib/rwkvd/heads" ]; then
            echo "FAIL: systemd-tmpfiles --create rwkvd.tmpfiles:"; printf '%s\n' "$out" | sed 's/^/    /'; fail=1
        else
            echo "ok: systemd-tmpfiles creates the rwkvd.tmpfiles entries"
        fi
    else
        echo "note: rwkvd.tmpfiles not applied (needs root to chown)"
    fi
fi
exit $fail
