"""``python -m fakes.openfga --port N [--model fga/model.json] [--require-auth]``.

With ``--model`` a store is created and the model written; their ids are printed as
``ESPOMCP_FGA_STORE_ID=…`` / ``ESPOMCP_FGA_MODEL_ID=…`` lines for the shell.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from werkzeug.serving import run_simple

from fakes.openfga import FakeOpenFga, create_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fakes.openfga", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--model", type=Path, help="authorization model JSON to load into a new store")
    parser.add_argument("--store-name", default="espomcp")
    parser.add_argument("--require-auth", action="store_true", help="demand bearer tokens")
    parser.add_argument("--client-id", default="fga-client")
    parser.add_argument("--client-secret", default="fga-secret")
    parser.add_argument("--api-token", default="", help="pre-shared token accepted as bearer")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the fake only listens on loopback")
    state = FakeOpenFga(require_auth=args.require_auth, client_id=args.client_id,
                        client_secret=args.client_secret, api_token=args.api_token)
    if args.model:
        store = state.create_store(args.store_name)
        model_id = state.write_model(store.id, json.loads(args.model.read_text(encoding="utf-8")))
        print(f"ESPOMCP_FGA_STORE_ID={store.id}\nESPOMCP_FGA_MODEL_ID={model_id}", flush=True)
    run_simple(args.host, args.port, create_app(state), threaded=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
