"""``pymm agent``: run the long-lived node agent (see :mod:`pymm.agent` for its guarantees and
``deploy/agent-api.md`` for its endpoints)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pymm.errors import ConfigError, PymmError

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``agent`` subcommand."""
    from pymm.commands._options import add_manager_options, port

    p = subparsers.add_parser(
        "agent",
        help="serve admit/remove/state/hints/NRT/metrics as HTTP/JSON on a unix socket",
        description="Own a state directory and serve it over HTTP/JSON on a unix socket (mode "
        "0600): POST /v1/admit, POST /v1/remove, GET /v1/state, POST /v1/hints, GET /v1/nrt, "
        "GET /metrics, GET /healthz. Every change is on disk before it is answered. Stops "
        "gracefully on SIGTERM. Logs are JSON lines on stderr.",
    )
    add_manager_options(p, writes=True)
    p.add_argument("--socket", required=True, metavar="PATH", help="the unix socket to serve on")
    p.add_argument(
        "--metrics-port",
        type=port,
        metavar="N",
        help="also serve /metrics and /healthz (only those) on this TCP port (0: any free port)",
    )
    p.add_argument(
        "--metrics-address",
        default="127.0.0.1",
        metavar="ADDR",
        help="address for --metrics-port (default 127.0.0.1; 0.0.0.0 to be scraped from "
        "outside the node)",
    )
    p.add_argument(
        "--ready-file",
        metavar="FILE",
        help="write this file (JSON: pid, socket, metricsPort) once serving; removed on exit",
    )
    p.add_argument(
        "--node-name", help="the Node's name for GET /v1/nrt (default: $NODE_NAME, else host name)"
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="close a connection that sends no complete request header for this long, idle "
        "keep-alive connections included (default 10)",
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="answer 408 and close a connection whose request body takes longer (default 10)",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.state_dir:
        raise PymmError("agent needs --state-dir: it owns the state and keeps it durable")
    try:
        import prometheus_client
        import uvloop

        from pymm.agent import Agent
        from pymm.logs import setup_json_logging
        from pymm.metrics import Metrics
    except ImportError as e:
        raise ConfigError(f"pymm agent needs {e.name}: pip install 'pymm[agent]'") from None
    from pymm.agent import claim_socket
    from pymm.commands._options import build_manager

    # The kubelet exports no *_created series; neither does the agent.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = prometheus_client.CollectorRegistry()
    manager = build_manager(args, metrics=Metrics(registry))
    try:
        agent = Agent(
            manager,
            node_name=args.node_name,
            registry=registry,
            idle_timeout=args.idle_timeout,
            body_timeout=args.body_timeout,
        )
        claim_socket(Path(args.socket))
    except BaseException:
        manager.close()
        raise
    # Only now: a start that fails above is one `pymm: error:` line, not a log record.
    setup_json_logging(args.log_level)
    # uvloop: the event loop, transports and futures in C. Every request's CPU is on the
    # serial path of group commit, and this is a measurable part of it.
    uvloop.run(
        agent.serve(
            Path(args.socket),
            metrics_port=args.metrics_port,
            metrics_address=args.metrics_address,
            ready_file=Path(args.ready_file) if args.ready_file else None,
        )
    )
    return 0
