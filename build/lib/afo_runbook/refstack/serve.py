"""One reference service in one process:

    python -m afo_runbook.refstack.serve {api,aux,dashboard} --port N --state-dir DIR

Logs go to stdout (the stack appends them to <state-dir>/logs/<service>.log). The api reads
AFO_INTERNAL_SECRET from its environment once, at start, like the real service.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from afo_runbook.refstack.services import SECRET_ENV, SERVICE_NAMES

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m afo_runbook.refstack.serve")
    parser.add_argument("service", choices=SERVICE_NAMES)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--heartbeat-interval", type=float, default=1.0, help="seconds between SSE heartbeats"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format=LOG_FORMAT)
    log = logging.getLogger(f"refstack.{args.service}")

    secret: str | None = None
    if args.service == "api":
        secret = os.environ.get(SECRET_ENV) or None  # empty counts as not configured
        # Say whether a secret is configured, never what it is.
        log.info("internal secret configured: %s", "yes" if secret else "NO (guard answers 503)")

    # Heavy imports only now, after argument errors had their chance to fail fast.
    import uvicorn

    from afo_runbook.refstack.apps import build_app

    app = build_app(
        args.service, args.state_dir, secret=secret, heartbeat_interval=args.heartbeat_interval
    )
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_config=None,  # uvicorn's loggers propagate to our stdout handler, one format
        log_level="warning",
        access_log=False,
        lifespan="off",
        # SIGTERM must end the process promptly even with open SSE/tarpit connections.
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    log.info(
        "%s starting on http://%s:%d (pid %d)", args.service, args.host, args.port, os.getpid()
    )
    # On SIGTERM uvicorn drains (at most timeout_graceful_shutdown), then re-raises the signal.
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
