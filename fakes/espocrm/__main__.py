"""``python -m fakes.espocrm --port 8200 [--data FILE]``: serve the seeded fake EspoCRM."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import threading

from fakes.espocrm.app import FakeEspoCRM
from fakes.espocrm.seed import DEMO_API_KEY, DEMO_SECRET


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fakes.espocrm", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--data", help="JSON file to persist the data in (loaded if present)")
    parser.add_argument("--api-key", default=DEMO_API_KEY)
    parser.add_argument("--secret", default=DEMO_SECRET, help="HMAC secret of the Hmac API user")
    parser.add_argument("--webhook-interval", type=float, default=2.0,
                        help="seconds between webhook delivery runs (0 = only via /_fake/deliver)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    fake = FakeEspoCRM(args.data, api_key=args.api_key, secret=args.secret)
    fake.state.webhook_retry_period = 30.0
    fake.start(args.host, args.port)
    if args.webhook_interval > 0:
        fake.sender.start(args.webhook_interval)
    print(f"fake EspoCRM on {fake.url}/api/v1 (API key {args.api_key!r})", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with contextlib.suppress(KeyboardInterrupt):
        done.wait()
    fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
