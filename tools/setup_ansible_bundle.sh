#!/usr/bin/env bash
# The virtual environment of the third-party conformance tests (tests/thirdparty/): the PyPI
# `ansible` bundle (community.general's XenServer modules, unmodified) and XenAPI, pinned by
# tests/thirdparty/ansible-bundle/{requirements,constraints}.txt, in .venv-bundle, apart from the
# project's .venv. Idempotent: pip runs only when the stamp (a digest of both files and the base
# python's version) differs from the one written after the last install.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv-bundle"
PY="$VENV/bin/python"
STAMP="$VENV/.sxm-stamp"
REQS="tests/thirdparty/ansible-bundle/requirements.txt"
CONSTRAINTS="tests/thirdparty/ansible-bundle/constraints.txt"
# The project's python (tools/setup.sh); Debian's venv module comes with python3-venv.
BASE_PYTHON=/usr/bin/python3

say() { printf 'setup_ansible_bundle: %s\n' "$*"; }

wanted_stamp() {
    {
        sha256sum "$REQS" "$CONSTRAINTS"
        "$BASE_PYTHON" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -d' ' -f1
}

venv_is_usable() {
    "$PY" -c 'import ansible, XenAPI, ansible_collections.community.general' >/dev/null 2>&1
}

main() {
    local base_version
    base_version="$("$BASE_PYTHON" -c 'import sys; print(sys.version_info[:2])')"
    # Made afresh when missing or made by another python (its site-packages would not be seen).
    if [ ! -x "$PY" ] || [ "$("$PY" -c 'import sys; print(sys.version_info[:2])' 2>/dev/null || true)" \
            != "$base_version" ]; then
        rm -rf "$VENV"
        "$BASE_PYTHON" -m venv "$VENV"
    fi
    local wanted
    wanted="$(wanted_stamp)"
    if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$wanted" ] || ! venv_is_usable; then
        rm -f "$STAMP"
        local log
        # pip's own output only when it fails: one line on success.
        if ! log="$("$PY" -m pip install --quiet --disable-pip-version-check \
                -r "$REQS" -c "$CONSTRAINTS" 2>&1)"; then
            printf '%s\n' "$log" >&2
            say "pip install failed" >&2
            exit 1
        fi
        printf '%s\n' "$wanted" > "$STAMP"
        say "installed into .venv-bundle ($("$PY" -c 'import ansible_collections.ansible_release as r, ansible.release as c; print("ansible", r.ansible_version, "ansible-core", c.__version__)'))"
    else
        say "up to date (.venv-bundle)"
    fi
}

main "$@"
