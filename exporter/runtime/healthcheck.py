"""`job-exporter healthcheck`: GET /healthz of the exporter this container runs, exit 0 or 1.

The image's HEALTHCHECK runs it beside the container's main process, whose address may come
from `--listen`, from `JOB_EXPORTER_LISTEN` or from the `--config` file. So the address is found
the way that process found it: its command line (`/proc/PID/cmdline`, PID 1 by default), its
environment and working folder are parsed by the same click command it ran (`serve` or `demo`),
which applies the same precedence and defaults. A process that is not job-exporter (or none)
leaves this process's own environment and the command's defaults. `--listen` names the address
outright.

The request goes to loopback when the process listens on every address, and through
http.client, so no HTTP_PROXY of the environment is in the way.
"""

from __future__ import annotations

import http.client
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import click

from exporter.config import ConfigError, parse_listen

PROGRAM = "job-exporter"
ENV_PREFIX = "JOB_EXPORTER_"
DEFAULT_TIMEOUT = 2.0
DEFAULT_PID = 1


def program_args(argv: Sequence[str]) -> list[str] | None:
    """The arguments after the program in a command line, or None if it is not job-exporter.

    The program shows as the console script (run by its interpreter, `python
    /usr/local/bin/job-exporter serve ...`, or under an init such as tini), or as `python -m
    exporter`.
    """
    for index, arg in enumerate(argv):
        if Path(arg).name == PROGRAM:
            return list(argv[index + 1 :])
        if arg == "-m" and argv[index + 1 : index + 2] == ["exporter"]:
            return list(argv[index + 2 :])
        if arg == "-mexporter":
            return list(argv[index + 1 :])
    return None


def read_process(pid: int) -> tuple[list[str], dict[str, str], str | None] | None:
    """A process's command line, environment and working folder; None if it cannot be read."""
    proc = Path("/proc") / str(pid)
    try:
        argv = proc.joinpath("cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    environ: dict[str, str] = {}
    with suppress(OSError):
        for entry in proc.joinpath("environ").read_bytes().split(b"\0"):
            name, sep, value = entry.partition(b"=")
            if sep:
                environ[os.fsdecode(name)] = os.fsdecode(value)
    cwd = None
    with suppress(OSError):
        cwd = os.readlink(proc / "cwd")
    return [os.fsdecode(arg) for arg in argv if arg], environ, cwd


@contextmanager
def _as_process(environ: Mapping[str, str], cwd: str | None) -> Iterator[None]:
    """Within: the other process's JOB_EXPORTER_* variables and working folder, so click reads
    its options as that process did. This process is a short-lived command: nothing else runs
    meanwhile."""
    saved = {name: value for name, value in os.environ.items() if name.startswith(ENV_PREFIX)}
    here = os.getcwd()
    for name in saved:
        del os.environ[name]
    os.environ.update({k: v for k, v in environ.items() if k.startswith(ENV_PREFIX)})
    try:
        if cwd:
            with suppress(OSError):
                os.chdir(cwd)
        yield
    finally:
        for name in [name for name in os.environ if name.startswith(ENV_PREFIX)]:
            del os.environ[name]
        os.environ.update(saved)
        os.chdir(here)


def listen_of(group: click.Group, args: Sequence[str]) -> str:
    """The `--listen` a command line of `group` resolves to, with this process's environment:
    options, then variables, then the config file, then the command's default."""
    command_name = args[0] if args else "serve"
    command = group.commands.get(command_name)
    if command is None or "listen" not in {p.name for p in command.params}:
        command, rest = group.commands["serve"], []
    else:
        rest = list(args[1:])
    parent = click.Context(group, info_name=PROGRAM)
    with command.make_context(command.name, rest, parent=parent) as ctx:
        return str(ctx.params["listen"])


def address_of(group: click.Group, pid: int) -> str:
    """The `--listen` of the job-exporter that process `pid` runs, found as it found it."""
    process = read_process(pid)
    if process is None:
        return listen_of(group, [])
    argv, environ, cwd = process
    args = program_args(argv)
    if args is None:
        return listen_of(group, [])
    with _as_process(environ, cwd):
        return listen_of(group, args)


def health_url(listen: str) -> tuple[str, int]:
    """Where to GET /healthz of a server bound to `listen`: loopback for every address."""
    host, port = parse_listen(listen)
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, port


def probe(host: str, port: int, timeout: float) -> str | None:
    """None when GET /healthz answers 200; else what went wrong."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", "/healthz", headers={"User-Agent": f"{PROGRAM}-healthcheck"})
        response = connection.getresponse()
        response.read()
    except (OSError, http.client.HTTPException) as error:
        return f"{type(error).__name__}: {error}"
    finally:
        connection.close()
    return None if response.status == 200 else f"status {response.status}"


@click.command()
@click.option(
    "--listen",
    default=None,
    metavar="HOST:PORT",
    help="The address to check  [default: the one the job-exporter of --pid listens on]",
)
@click.option(
    "--pid",
    type=click.IntRange(min=1),
    default=DEFAULT_PID,
    help="The process whose command line, environment and working folder name the address "
    "(1: the container's main process).",
)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=DEFAULT_TIMEOUT)
@click.pass_context
def healthcheck(ctx: click.Context, listen: str | None, pid: int, timeout: float) -> None:
    """Exit 0 if the exporter answers GET /healthz with 200, else 1 (for HEALTHCHECK)."""
    group = ctx.find_root().command
    assert isinstance(group, click.Group)
    try:
        address = listen or address_of(group, pid)
        host, port = health_url(address)
    except (click.ClickException, ConfigError) as error:
        click.echo(f"healthcheck: cannot tell the address: {error}", err=True)
        ctx.exit(1)
    problem = probe(host, port, timeout)
    if problem is not None:
        shown = f"[{host}]" if ":" in host else host
        click.echo(f"healthcheck: http://{shown}:{port}/healthz: {problem}", err=True)
        ctx.exit(1)
