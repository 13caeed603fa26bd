#!/usr/bin/env bash
# Checks the TypeScript portal client against the committed OpenAPI document: installs the
# pinned packages from package-lock.json (npm ci), generates src/schema.d.ts from
# ../../openapi/openapi.json and type-checks src/ with tsc --noEmit.
#
# Without npm it prints "skipped" and exits 0, unless REQUIRE_NODE=1, then it exits 1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v npm >/dev/null 2>&1; then
    if [[ "${REQUIRE_NODE:-0}" == 1 ]]; then
        echo "check.sh: failed, because npm is missing and REQUIRE_NODE=1 is set. To fix it, install Node.js 20 or later with npm." >&2
        exit 1
    fi
    echo "check.sh: skipped, because npm is missing (set REQUIRE_NODE=1 to make this an error)"
    exit 0
fi

npm ci --no-audit --no-fund --loglevel=error
npm run --silent generate
npx --no-install tsc --noEmit
echo "check.sh: the portal client type-checks against openapi/openapi.json"
