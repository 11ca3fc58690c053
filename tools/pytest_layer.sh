#!/usr/bin/env bash
# `make unit|conformance|integration`: run one pytest layer from .venv.
# A layer with no tests yet is reported as such and does not fail (pytest exits 5 for that).
set -uo pipefail

NAME="$1"
DIR="$2"
shift 2
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1

if [ ! -d "$DIR" ]; then
    echo "$NAME: no tests yet ($DIR does not exist)"
    exit 0
fi

.venv/bin/python -m pytest -q -p no:cacheprovider "$DIR" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "$NAME: no tests yet (pytest collected none in $DIR)"
    exit 0
fi
exit "$rc"
