"""An execution environment: `make ee-context` builds the collection's tarball and turns
execution-environment.yml into a build context with `ansible-builder create`; its system
dependencies are bindep.txt's run-time entries only (the test profile stays out)."""

import os
import subprocess
import sys

from harness import REPO

BIN = os.path.dirname(sys.executable)


def test_make_ee_context_makes_a_build_context_with_the_collection_and_its_run_time_needs():
    proc = subprocess.run(["make", "--no-print-directory", "ee-context", "SETUP_DONE=1"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    context = os.path.join(REPO, "build", "ee")
    files = os.listdir(context)
    recipe = [f for f in files if f in ("Containerfile", "Dockerfile")]
    assert recipe, files
    text = open(os.path.join(context, recipe[0])).read()
    assert "ansible-galaxy collection install" in text and "install-from-bindep" in text
    build = os.path.join(context, "_build")
    assert os.path.getsize(os.path.join(build, "collections", "xapi-sxm.tar.gz")) > 0
    assert "XenAPI==" in open(os.path.join(build, "requirements.txt")).read()
    # what bindep installs in the image: the default profile, on either package family
    listed = subprocess.run([os.path.join(BIN, "bindep"), "-l", "newline", "-f", os.path.join(build, "bindep.txt")],
                            capture_output=True, text=True)
    assert sorted(listed.stdout.split()) == ["ca-certificates", "python3-libnbd"], listed.stdout + listed.stderr
