#!/usr/bin/env bash
# Regenerate fga/model.json from fga/model.fga (the DSL is the source of truth) with the
# real OpenFGA CLI; tests/test_fga_model.py fails when the two drift.
set -euo pipefail
cd "$(dirname "$0")/.."
FGA="${FGA:-.venv/bin/fga}"
"$FGA" model validate --file fga/model.fga >/dev/null || {
    "$FGA" model validate --file fga/model.fga; exit 1; }
"$FGA" model transform --file fga/model.fga --output-format json \
    | .venv/bin/python -c 'import json,sys; print(json.dumps(json.load(sys.stdin), indent=2))' \
    > fga/model.json
mkdir -p espomcp/data
cp fga/model.json espomcp/data/model.json  # packaged copy for installs without the repo
echo "wrote fga/model.json and espomcp/data/model.json"
