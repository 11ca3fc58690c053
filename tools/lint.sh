#!/usr/bin/env bash
# `make lint`: ruff on the Python code (config in ruff.toml), ansible-lint on playbooks/ and roles/
# when they have content, docs/reference.md against ansible-doc, and the changelog fragments. Runs every linter, fails if any failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
BIN="$ROOT/.venv/bin"
failed=()

existing_dirs() {
    local dir
    for dir in "$@"; do
        [ -d "$dir" ] && printf '%s\n' "$dir"
    done
}

mapfile -t python_dirs < <(existing_dirs plugins tests bench tools)
echo "lint: ruff check ${python_dirs[*]}"
"$BIN/ruff" check --no-cache "${python_dirs[@]}" || failed+=(ruff)

mapfile -t ansible_dirs < <(existing_dirs playbooks roles)
ansible_files=()
if [ "${#ansible_dirs[@]}" -gt 0 ]; then
    mapfile -t ansible_files < <(find "${ansible_dirs[@]}" -type f \( -name '*.yml' -o -name '*.yaml' \))
fi
if [ "${#ansible_files[@]}" -eq 0 ]; then
    echo "lint: ansible-lint skipped (no playbooks or roles yet)"
else
    echo "lint: ansible-lint ${ansible_dirs[*]}"
    # config in .ansible-lint; .venv/bin first on PATH, as ansible-lint expects.
    PATH="$BIN:$PATH" ANSIBLE_CONFIG="$ROOT/ansible.cfg" "$BIN/ansible-lint" --nocolor \
        "${ansible_dirs[@]}" || failed+=(ansible-lint)
fi

echo "lint: docs/reference.md is current (tools/reference.py --check)"
"$BIN/python" tools/reference.py --check || failed+=(reference)

echo "lint: antsibull-changelog lint"
"$BIN/antsibull-changelog" lint || failed+=(antsibull-changelog)

if [ "${#failed[@]}" -gt 0 ]; then
    echo "lint: FAILED: ${failed[*]}"
    exit 1
fi
echo "lint: passed"
