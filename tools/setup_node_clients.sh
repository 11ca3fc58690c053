#!/usr/bin/env bash
# Node.js clients used by the third-party conformance tests (tests/thirdparty/): Xen
# Orchestra's `xen-api` package, installed from tests/thirdparty/xo/package-lock.json with
# `npm ci`. Idempotent: npm runs only when the lockfile or the node version changed since the
# last install (a stamp in node_modules/). Needs node >= 18; as root, installs Debian's nodejs
# and npm when they are missing. Prints one line when all is well.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
XO_DIR="$ROOT/tests/thirdparty/xo"
STAMP="$XO_DIR/node_modules/.sxm-stamp"
NODE_MIN_MAJOR=18

say() { printf 'setup_node_clients: %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }

node_major() {
    node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0
}

ensure_node() {
    if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
        return
    fi
    if [ "$(id -u)" -ne 0 ]; then
        die "node and npm are needed (node >= $NODE_MIN_MAJOR): run as root, or apt-get install nodejs npm"
    fi
    say "installing Debian packages: nodejs npm"
    export DEBIAN_FRONTEND=noninteractive
    local log
    log="$(mktemp)"
    if ! { apt-get update -q && apt-get install -y -q --no-install-recommends nodejs npm; } \
            >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        die "apt-get install nodejs npm failed"
    fi
    rm -f "$log"
}

wanted_stamp() {
    {
        cat "$XO_DIR/package-lock.json"
        node --version
    } | sha256sum | cut -d' ' -f1
}

install_packages() {
    local log
    log="$(mktemp)"
    if ! (cd "$XO_DIR" && npm ci --no-audit --no-fund) >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        die "npm ci failed in $XO_DIR"
    fi
    rm -f "$log"
}

main() {
    ensure_node
    local major
    major="$(node_major)"
    if [ "$major" -lt "$NODE_MIN_MAJOR" ]; then
        die "node $(node --version) is too old: $NODE_MIN_MAJOR or later is needed"
    fi
    [ -f "$XO_DIR/package-lock.json" ] || die "$XO_DIR/package-lock.json is missing"

    local wanted
    wanted="$(wanted_stamp)"
    if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$wanted" ] \
            || [ ! -f "$XO_DIR/node_modules/xen-api/package.json" ]; then
        install_packages
        printf '%s\n' "$wanted" > "$STAMP"
    fi
    local version
    version="$(node -p 'require(process.argv[1]).version' \
        "$XO_DIR/node_modules/xen-api/package.json")"
    say "ready (node $(node --version), xen-api $version)"
}

main "$@"
