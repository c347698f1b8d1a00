#!/usr/bin/python3
"""Print the build-directory paths of the targets `meson install` installs (for a build
that skips the test programs: debian/rules with DEB_BUILD_OPTIONS=nocheck)."""
import json
import os
import subprocess
import sys

builddir = sys.argv[1]
targets = json.loads(subprocess.run(["meson", "introspect", "--targets", builddir], capture_output=True,
                                    text=True, check=True).stdout)
for t in targets:
    if t.get("installed"):
        for f in t["filename"]:
            print(os.path.relpath(f, os.path.abspath(builddir)))
