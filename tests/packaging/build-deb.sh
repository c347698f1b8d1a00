#!/bin/sh
# build-deb.sh SRCDIR OUTDIR — build the Debian packages of the tree in SRCDIR into OUTDIR.
#
# The tree (tracked files and untracked ones git does not ignore, as they are now) is copied
# to OUTDIR/src and built there with `dpkg-buildpackage -us -uc -b`, so SRCDIR and its build
# directories are never touched. OUTDIR/tree-key records a hash of the copied tree: when it
# is unchanged and the .deb files are there, nothing is rebuilt. DEB_BUILD_OPTIONS defaults
# to "nocheck parallel=$(nproc)" (make check runs the tests; set DEB_BUILD_OPTIONS= to run
# the unit suite during the build too).
# Exit 0 with the .deb files in OUTDIR, 77 when dpkg-buildpackage or a build dependency is
# missing (printed), 1 when the build fails (the log is OUTDIR/build.log).
set -eu
src=$(cd "$1" && pwd)
mkdir -p "$2"
out=$(cd "$2" && pwd)
command -v dpkg-buildpackage >/dev/null 2>&1 || { echo "dpkg-buildpackage not found (apt install dpkg-dev debhelper)"; exit 77; }

list=$(mktemp)
trap 'rm -f "$list"' EXIT
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$src" ls-files -z --cached --others --exclude-standard | \
      (cd "$src" && xargs -0 sh -c 'for f; do [ -f "$f" ] && printf "%s\0" "$f"; done' sh) > "$list"
else # not a checkout (a release tarball): every file but build directories
    (cd "$src" && find . \( -path './build*' -o -path './.git' -o -path './obj-*' \) -prune -o -type f -print0) > "$list"
fi
key=$( (cd "$src" && xargs -0 sha256sum < "$list") | sha256sum | cut -c1-16)
if [ -f "$out/tree-key" ] && [ "$(cat "$out/tree-key")" = "$key" ] && ls "$out"/rwkvd_*.deb >/dev/null 2>&1; then
    echo "build-deb: packages in $out are up to date (tree $key)"
    exit 0
fi
if ! missing=$(cd "$src" && dpkg-checkbuilddeps 2>&1); then
    echo "build-deb: $missing"
    exit 77
fi
rm -rf "$out/src" "$out"/*.deb "$out"/*.buildinfo "$out"/*.changes "$out/tree-key"
mkdir -p "$out/src/rwkvd"
(cd "$src" && tar --null -T "$list" -cf -) | tar -C "$out/src/rwkvd" -xf -
echo "build-deb: building tree $key in $out/src (log: $out/build.log)"
t0=$(date +%s)
if ! (cd "$out/src/rwkvd" && DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS-"nocheck parallel=$(nproc)"} \
        dpkg-buildpackage -us -uc -b) > "$out/build.log" 2>&1; then
    tail -30 "$out/build.log"
    echo "build-deb: dpkg-buildpackage failed"
    exit 1
fi
mv "$out"/src/*.deb "$out"/src/*.buildinfo "$out"/src/*.changes "$out/"
echo "$key" > "$out/tree-key"
echo "build-deb: built in $(( $(date +%s) - t0 )) s:"
ls -l "$out"/*.deb
