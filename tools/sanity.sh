#!/usr/bin/env bash
# `make sanity`: ansible-test sanity on a copy of the collection under
# build/sanity/ansible_collections/xapi/sxm (ansible-test insists on that path), on the local
# Python 3.11, without containers. `tools/sanity.sh units` (make ansible-test-units) runs
# `ansible-test units` the same way on a copy that keeps the simulator the unit tests start. Sanity tests that cannot run here are skipped, see
# docs/README.md ("Testing"). Extra arguments are passed to ansible-test (e.g. --test pylint).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
MODE=sanity
if [ "${1:-}" = units ]; then
    MODE=units
    shift
fi
TREE="$ROOT/build/$MODE/ansible_collections/xapi/sxm"
# ansible-test keeps its per-test virtual environments and download cache under ~/.ansible/test;
# a HOME inside build/ keeps them out of the user's home and makes them easy to throw away.
TEST_HOME="$ROOT/build/ansible-test-home"

# Sanity tests skipped here, each for a reason given in docs/README.md.
SKIPPED_TESTS=(pslint)
# Not Ansible content: the simulator, its conformance tests, the pytest harness of the
# integration tests and the benchmarks are plain Python run from .venv, never by Ansible;
# `make lint` (ruff) checks them. Left out of the sanity copy.
NOT_COLLECTION_CONTENT=(tests/xapisim tests/conformance tests/integration tests/thirdparty tests/faults bench)
if [ "$MODE" = units ]; then
    # the unit tests run against simulated pools (tests/conftest.py)
    NOT_COLLECTION_CONTENT=(tests/conformance tests/integration tests/thirdparty tests/faults tests/long bench)
fi

copy_collection() {
    rm -rf "$TREE"
    mkdir -p "$TREE"
    cd "$ROOT"
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        # Tracked files plus new files not ignored yet; files deleted in the work tree are left out.
        git ls-files -z --cached --others --exclude-standard \
            | while IFS= read -r -d '' path; do [ -e "$path" ] && printf '%s\0' "$path"; done \
            | tar --null --files-from - -cf - | tar -xf - -C "$TREE"
    else
        tar --exclude=./.venv --exclude=./build --exclude=./tests/output --exclude=./.git \
            --exclude='__pycache__' --exclude=./.pytest_cache --exclude=./.ruff_cache \
            -cf - . | tar -xf - -C "$TREE"
    fi
    local path
    for path in "${NOT_COLLECTION_CONTENT[@]}"; do
        rm -rf "${TREE:?}/$path"
    done
    # The copy lies inside the repository's ignored build/; ansible-test lists files with git and
    # would see none. A repository of its own makes the copy self-contained.
    git -C "$TREE" init --quiet
    git -C "$TREE" add --all
}

install_pip_bootstrap() {
    local version
    version="$("$VENV/bin/python" - <<'PY'
from types import SimpleNamespace
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(SimpleNamespace(version="3.11"))["pip"])
PY
)"
    mkdir -p "$TEST_HOME/.ansible/test/cache"
    cp "$ROOT/tools/get_pip_shim.py" "$TEST_HOME/.ansible/test/cache/get_pip_${version//./_}.py"
}

main() {
    copy_collection
    install_pip_bootstrap
    local skip=()
    local test
    for test in "${SKIPPED_TESTS[@]}"; do
        skip+=(--skip-test "$test")
    done
    cd "$TREE"
    if [ "$MODE" = units ]; then
        HOME="$TEST_HOME" PATH="$VENV/bin:$PATH" \
            "$VENV/bin/ansible-test" units --local --python 3.11 --color no "$@"
        return
    fi
    HOME="$TEST_HOME" PATH="$VENV/bin:$PATH" \
        "$VENV/bin/ansible-test" sanity --local --python 3.11 --color no "${skip[@]}" "$@"
}

main "$@"
