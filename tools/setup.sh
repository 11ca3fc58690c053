#!/usr/bin/env bash
# One-command set-up (`make setup`): Debian packages, the .venv virtual environment with pinned
# Python packages, the simulator importable from .venv, the collection tree under build/, and
# the pinned third-party clients the conformance tests run (Node.js `xen-api`, .venv-bundle).
# Idempotent; a re-run when everything is in place only checks and takes a few seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.sxm-setup-stamp"
# Debian's python: the only one that can import Debian's libnbd bindings (`import nbd`).
BASE_PYTHON=/usr/bin/python3
# Every Debian package bindep.txt names, run time and test profiles alike.
mapfile -t DEBIAN_PACKAGES < <(grep -E '^[a-z0-9][^ ]* \[[^]]*platform:dpkg' bindep.txt | cut -d' ' -f1)

say() { printf 'setup: %s\n' "$*"; }

missing_debian_packages() {
    local pkg status
    for pkg in "${DEBIAN_PACKAGES[@]}"; do
        status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
        if [ "$status" != installed ]; then
            printf '%s\n' "$pkg"
        fi
    done
}

install_debian_packages() {
    local missing
    mapfile -t missing < <(missing_debian_packages)
    if [ "${#missing[@]}" -eq 0 ]; then
        return
    fi
    say "installing Debian packages: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        say "not root: run as root, or install them yourself: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# The requirement files, the set-up script and the base python decide whether pip must run.
wanted_stamp() {
    {
        cat requirements.txt requirements-test.txt constraints.txt "${BASH_SOURCE[0]}"
        "$BASE_PYTHON" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -d' ' -f1
}

venv_is_usable() {
    [ -x "$PY" ] && "$PY" -c 'import nbd, XenAPI, ansible, pytest' >/dev/null 2>&1
}

create_venv() {
    if [ -x "$PY" ] && "$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
            2>/dev/null; then
        return
    fi
    say "creating $VENV from $BASE_PYTHON (with system site packages, for libnbd's bindings)"
    rm -rf "$VENV"
    "$BASE_PYTHON" -m venv --system-site-packages "$VENV"
}

install_python_packages() {
    say "installing pinned Python packages into .venv"
    rm -f "$STAMP"
    local constraints=(-c constraints.txt)
    if [ "${SXM_IGNORE_CONSTRAINTS:-0}" = 1 ]; then
        constraints=()  # `make constraints`: resolve afresh, then freeze
    fi
    "$PY" -m pip install --quiet --disable-pip-version-check -r requirements-test.txt "${constraints[@]}"

}

# `.venv/bin/python -m xapisim ...` works from any directory: tests/ is on .venv's sys.path.
link_simulator() {
    local site
    site="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    printf '%s\n' "$ROOT/tests" > "$site/xapi_sxm_tests.pth"
}

# ansible.cfg's collections_path: build/collections/ansible_collections/xapi/sxm -> the repository.
link_collection() {
    local dir="$ROOT/build/collections/ansible_collections/xapi"
    mkdir -p "$dir"
    if [ "$(readlink "$dir/sxm" 2>/dev/null || true)" != "../../../.." ]; then
        rm -rf "$dir/sxm"
        ln -s ../../../.. "$dir/sxm"
    fi
}

main() {
    install_debian_packages
    create_venv
    local wanted
    wanted="$(wanted_stamp)"
    if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$wanted" ] || ! venv_is_usable \
            || [ "${SXM_IGNORE_CONSTRAINTS:-0}" = 1 ]; then
        install_python_packages
    fi
    link_simulator
    link_collection
    if ! "$PY" -c 'import nbd, XenAPI' ; then
        say ".venv cannot import nbd and XenAPI (is python3-libnbd installed?)" >&2
        exit 1
    fi
    printf '%s\n' "$wanted" > "$STAMP"
    # the third-party clients of tests/thirdparty/, each pinned and apart from .venv
    "$ROOT/tools/setup_node_clients.sh"
    "$ROOT/tools/setup_ansible_bundle.sh"
    say "ready ($("$PY" -c 'import ansible.release as r; print("ansible-core", r.__version__)'))"
}

main "$@"
