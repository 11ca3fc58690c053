#!/usr/bin/env bash
# `make test-ansible-versions`: the oldest ansible-core that meta/runtime.yml's requires_ansible
# admits, and the newest (the one requirements.txt pins), each in a virtual environment of its
# own under build/, run `make demo`'s playbook (a migration of a branched tree between two
# simulated pools through the role) and `make demo-evacuate`'s (an evacuation of three VMs from a
# pool of two hosts), from the same working tree.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

OLDEST="$(sed -n 's/^requires_ansible: *">=\([0-9.]*\)".*/\1/p' meta/runtime.yml)"
NEWEST="$(sed -n 's/^ansible-core==\([0-9.]*\)$/\1/p' requirements.txt)"
XENAPI="$(grep '^XenAPI==' requirements.txt)"
if [ -z "$OLDEST" ] || [ -z "$NEWEST" ]; then
    echo "ansible_versions: cannot read requires_ansible or the ansible-core pin" >&2
    exit 1
fi

failed=""
for version in "$OLDEST" "$NEWEST"; do
    venv="build/ansible-core-$version"
    echo "=== ansible-core $version"
    if [ ! -x "$venv/bin/ansible-playbook" ]; then
        # Debian's python: the only one that imports Debian's libnbd bindings
        /usr/bin/python3 -m venv --system-site-packages "$venv"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "ansible-core==$version" "$XENAPI"
    fi
    # the simulator, as .venv has it (tools/setup.sh)
    site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    echo "$ROOT/tests" > "$site/xapi-sxm-tests.pth"
    # sed reads it all: head would close the pipe early, and ansible-core dies of the broken pipe
    "$venv/bin/ansible-playbook" --version | sed -n 1p
    for demo in playbooks/demo.yml playbooks/demo_evacuate.yml; do
        if ! ANSIBLE_CONFIG="$ROOT/ansible.cfg" "$venv/bin/ansible-playbook" "$demo"; then
            failed="$failed $version ($demo)"
        fi
    done
done
if [ -n "$failed" ]; then
    echo "=== a demo failed with ansible-core:$failed"
    exit 1
fi
echo "=== both demos passed with ansible-core $OLDEST and $NEWEST"
