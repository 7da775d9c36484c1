"""The `purgewarden` command line.

Each subcommand is one `Command` in `COMMANDS`: its help line, a function adding its options and a handler
returning the exit status, so a new subcommand (`serve`, `demo`) is one more entry.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from purgewarden import __version__

if TYPE_CHECKING:
    from purgewarden.sandbox import Sandbox

# The MCP SDK and the emulators are imported by the subcommands that need them, so `serve` over stdio
# starts without loading the sandbox and `--help` without loading anything.
DEFAULT_PORTS = {"katapult": 8787, "vault": 8123, "cocoon": 8788}
"""Fixed so the docs can cite the URLs; 8123 is also a self-hosted Vault's own default."""


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (0-65535; 0 picks a free one)")
    return port


def _sandbox_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    for service, port in DEFAULT_PORTS.items():
        parser.add_argument(
            f"--{service}-port",
            type=_port,
            default=port,
            metavar="PORT",
            help=f"port of the {service} emulator (default: %(default)s; 0 picks a free port)",
        )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed for the fault injectors' random choices (default: %(default)s)",
    )
    capacity = parser.add_argument_group(
        "vault capacity",
        "give the Vault emulator a database's limits (off unless --vault-workers is set; values not given "
        "take the emulator's defaults, printed at start)",
    )
    capacity.add_argument("--vault-workers", type=int, metavar="N", help="requests served at once")
    capacity.add_argument(
        "--vault-item-ms", type=float, metavar="MS", help="milliseconds a deleted item holds a worker"
    )
    capacity.add_argument(
        "--vault-queue", type=int, metavar="N", help="requests that may wait for a worker; the rest get 429"
    )


def run_sandbox(args: argparse.Namespace) -> int:
    """Serve the three emulators with demo data until Ctrl-C or SIGTERM."""
    from pydantic import ValidationError

    from purgewarden.sandbox import SERVICES, Capacity, Sandbox, Service

    options = {  # Capacity field: (option, value given)
        "workers": ("--vault-workers", args.vault_workers),
        "item_seconds": (
            "--vault-item-ms",
            None if args.vault_item_ms is None else args.vault_item_ms / 1000,
        ),
        "queue_limit": ("--vault-queue", args.vault_queue),
    }
    given = {field: value for field, (_, value) in options.items() if value is not None}
    try:  # unset fields take the model's defaults; no option at all leaves the capacity model off
        capacity = Capacity.model_validate(given) if given else None
    except ValidationError as exc:
        for error in exc.errors():
            print(f"purgewarden sandbox: {options[str(error['loc'][0])][0]}: {error['msg']}", file=sys.stderr)
        return 2
    stop = threading.Event()
    with _stopping_on_signals(stop):
        sandbox = Sandbox(seed=args.seed, vault_capacity=capacity)
        ports: dict[Service, int] = {service: getattr(args, f"{service}_port") for service in SERVICES}
        try:
            sandbox.start(ports, host=args.host)
        except OSError as exc:
            sandbox.stop()
            print(f"purgewarden sandbox: cannot listen on {args.host}: {exc}", file=sys.stderr)
            return 1
        try:
            print(describe_sandbox(sandbox), flush=True)
            if capacity is not None:
                print(f"# vault capacity: {capacity.model_dump_json()}", flush=True)
            stop.wait()
        finally:
            sandbox.stop()
    print("# sandbox stopped", flush=True)
    return 0


def describe_sandbox(sandbox: Sandbox) -> str:
    """Where each emulator listens and its demo credential, then the MCP server's environment.

    Every line but the `export`s is a shell comment, so the whole output can be pasted into a shell.
    """
    environment = sandbox.server_environment()
    lines = ["# purgewarden sandbox: local emulators with demo data (Ctrl-C to stop)"]
    lines += [f"#   {name:<9} {e.url}  credential {e.credential}" for name, e in sandbox.endpoints.items()]
    lines.append(f"#   cocoon organisation {environment['COCOON_ORGANISATION_ID']}")
    lines.append("# Environment for the MCP server:")
    lines += [f"export {name}={shlex.quote(value)}" for name, value in environment.items()]
    return "\n".join(lines)


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transport", choices=["stdio", "streamable-http", "sse"], default="stdio")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="HTTP address (default: %(default)s; another needs PURGEWARDEN_HTTP_TOKEN or OAuth)",
    )
    parser.add_argument("--port", type=_port, default=8000, help="HTTP port (default: %(default)s)")
    parser.add_argument("--read-only", action="store_true", help="serve no destructive tool at all")
    parser.add_argument(
        "--toolsets", help="comma-separated services to serve: katapult,vault,cocoon (default: all)"
    )
    parser.add_argument(
        "--require-human",
        action="store_true",
        help="refuse destructive tools on clients that cannot ask the user",
    )
    parser.add_argument(
        "--sandbox", action="store_true", help="serve against in-process emulators with demo credentials"
    )


def run_serve(args: argparse.Namespace) -> int:
    """Run the MCP server until the client disconnects (stdio) or Ctrl-C (HTTP)."""
    import anyio
    from pydantic import ValidationError

    from purgewarden.config import Settings, parse_toolsets
    from purgewarden.server.transports import BindRefused, ServeFailed, configure_logging, serve

    environ = dict(os.environ)
    sandbox = None
    if args.sandbox:
        from purgewarden.sandbox import Sandbox

        sandbox = Sandbox()
        sandbox.start()
        environ.update(sandbox.server_environment())
    try:
        settings = Settings.from_env(
            environ,
            read_only=args.read_only or None,
            require_human=args.require_human or None,
            toolsets=parse_toolsets(args.toolsets) if args.toolsets else None,
        )
    except (ValidationError, ValueError) as exc:
        print(f"purgewarden serve: invalid configuration: {exc}", file=sys.stderr)
        return 2
    problem = audit_sink_problem(settings.audit_log, args.transport)
    if problem is not None:
        print(f"purgewarden serve: {problem}", file=sys.stderr)
        return 2
    configure_logging(settings)
    _reopen_audit_log_on_sighup()
    try:
        anyio.run(serve, settings, args.transport, args.host, args.port)
    except BindRefused as exc:
        print(f"purgewarden serve: {exc}", file=sys.stderr)
        return 2
    except ServeFailed as exc:
        print(f"purgewarden serve: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        if sandbox is not None:
            sandbox.stop()
    return 0


def audit_sink_problem(audit_log: Path, transport: str) -> str | None:
    """Why the audit log cannot go where it is configured to, or None: in stdio mode stdout is the protocol,
    and an audit line written there would corrupt it."""
    if transport != "stdio":
        return None
    if str(audit_log) == "stdout" or _is_stdout(audit_log):
        return (
            f"PURGEWARDEN_AUDIT_LOG={audit_log} is the MCP protocol's stream with the stdio transport; "
            "use stderr, a file, or an HTTP transport"
        )
    return None


def _is_stdout(path: Path) -> bool:
    """True when `path` is this process's stdout under another name (/dev/stdout, /proc/self/fd/1)."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError):
        return False


def _reopen_audit_log_on_sighup() -> None:
    """SIGHUP makes the audit file be reopened by path before its next line, so logrotate can move it."""
    if not hasattr(signal, "SIGHUP"):  # Windows has no SIGHUP
        return
    from purgewarden.safety.audit import AuditLog

    signal.signal(signal.SIGHUP, lambda signum, frame: AuditLog.request_reopen())


def run_demo_command(args: argparse.Namespace) -> int:
    import anyio

    from purgewarden.demo import run_demo

    return anyio.run(run_demo)


@contextmanager
def _stopping_on_signals(stop: threading.Event) -> Iterator[None]:
    """Turn SIGINT and SIGTERM into `stop`, so shutting down is a normal return, not a traceback."""

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


COMMANDS: dict[str, Command] = {
    "serve": Command("run the MCP server (stdio by default)", _serve_arguments, run_serve),
    "demo": Command(
        "run a scripted MCP session against the local sandbox and print the transcript",
        lambda parser: None,
        run_demo_command,
    ),
    "sandbox": Command(
        "serve local emulators of the Katapult, Piiano Vault and Cocoon Data APIs with demo data",
        _sandbox_arguments,
        run_sandbox,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="purgewarden",
        description="MCP server for previewed, confirmed, audited data cleanups on Katapult, Vault and Cocoon.",
    )
    parser.add_argument("--version", action="version", version=f"purgewarden {__version__}")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        command.add_arguments(subcommands.add_parser(name, help=command.help, description=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    # A host that launches the package bare (as Claude Desktop may for a bundle) gets the stdio server.
    args = build_parser().parse_args(arguments or ["serve"])
    return COMMANDS[args.command].run(args)
