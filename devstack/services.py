"""PostgreSQL and Redis for `make up` and `make test`: the running ones, or private ones.

`python -m devstack.services run -- COMMAND...` runs COMMAND with a DATABASE_URL and a REDIS_URL
that answer:

1. A service answering at its configured URL is used as it is.
2. One configured on this machine that does not answer gets a private instance under .run/, on a
   free port of 127.0.0.1: an initdb'd cluster in .run/postgres (its data kept from run to run)
   and a redis-server in .run/redis (nothing saved). Missing binaries are installed with apt-get
   first when we are root. A private instance another run started is shared.
3. COMMAND runs with the two URLs in its environment; signals sent to us alone are passed on.
4. When it exits, the instances step 2 started are stopped, and its exit status is ours.

System services are never stopped, restarted or reconfigured: a private instance has its own
directory, port and socket. Each one dies with the process that started it, however that goes.
"""

import argparse
import contextlib
import getpass
import locale
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import redis

from devstack.processes import HOST, REPO, die_with_parent, free_port

RUN_DIR = REPO / ".run"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
POSTGRES_LIBS = Path("/usr/lib/postgresql")  # Debian's binaries, one directory per version
PORT_ATTEMPTS = 3  # a free port can be taken between choosing it and the server binding it
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
PASSED_ON = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
# si_code of a signal the kernel sent. Ctrl-C at a terminal reaches its whole foreground process
# group, the command included, so passing it on would deliver it twice.
SI_KERNEL = 0x80


class ServiceError(Exception):
    """A service can be neither used nor started; the message says what to do."""


@dataclass
class Service:
    """One service as the command gets it: its URL and, if this run started it, the instance."""

    name: str
    variable: str
    url: str
    where: str
    process: "subprocess.Popen[bytes] | None" = None
    stop_signal: int = signal.SIGTERM
    instance_file: Path | None = None

    def stop(self) -> None:
        """Stop the private instance this run started; nothing else is ever stopped."""
        if self.process is None:
            return
        stop_process(self.process, self.stop_signal)
        if self.instance_file is not None:
            self.instance_file.unlink(missing_ok=True)
        self.process = None
        say(f"{self.name}: private instance stopped")


class Server(ABC):
    """One kind of service: where its binaries are, and how a private instance starts."""

    name: str
    variable: str
    default_url: str
    default_port: int
    package: str  # the Debian package with the binaries
    program: str  # what find() looks for, as said in messages
    directory: str  # its private instance's directory under .run/
    stop_signal: int  # shuts the server down cleanly without waiting for its clients

    @abstractmethod
    def find(self) -> Path | None:
        """The binaries' directory or path, or None when they are not installed."""

    @abstractmethod
    def argv(self, *, binaries: Path, home: Path, url: str, port: int) -> list[str]:
        """The command line of a private instance serving `url` on `port`."""

    @abstractmethod
    def answers(self, url: str) -> bool:
        """Whether a server at `url` takes requests (not only connections)."""

    def owner(self) -> pwd.struct_passwd | None:
        """The user a private instance runs as; None: the one we are."""
        return None

    @abstractmethod
    def prepare(self, *, binaries: Path, home: Path, url: str) -> None:
        """Make what a private instance needs before its first start."""


class Postgres(Server):
    name = "PostgreSQL"
    variable = "DATABASE_URL"
    default_url = "postgres://postgres@127.0.0.1:5432/tally"
    default_port = 5432
    package = "postgresql"
    program = "initdb and postgres"
    directory = "postgres"
    stop_signal = signal.SIGINT  # fast shutdown: ends the sessions rather than waiting for them

    def find(self) -> Path | None:
        """The bin directory of the newest PostgreSQL that has both initdb and postgres."""
        candidates = sorted(POSTGRES_LIBS.glob("*/bin"), key=_version, reverse=True)
        initdb = shutil.which("initdb")
        if initdb:
            candidates.append(Path(initdb).resolve().parent)
        for bindir in candidates:
            if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
                return bindir
        return None

    def owner(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise ServiceError(
                "PostgreSQL: it refuses to run as root and there is no postgres user to run it "
                "as: create one (adduser --system --group postgres) or run as another user"
            ) from None

    def prepare(self, *, binaries: Path, home: Path, url: str) -> None:
        """initdb a cluster in home/data unless there is one from an earlier run.

        initdb writes into data.new, renamed when it succeeds, so an initdb cut short is never
        mistaken for a cluster.
        """
        if (home / "data" / "PG_VERSION").exists():
            return
        say(f"PostgreSQL: creating a private cluster in {shown(home / 'data')} (initdb)")
        fresh = home / "data.new"
        shutil.rmtree(fresh, ignore_errors=True)
        argv = [str(binaries / "initdb"), "--pgdata", str(fresh), "--username", _superuser(url)]
        argv += ["--auth", "trust", "--encoding", "UTF8", "--locale", _locale(), "--no-sync"]
        result = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            preexec_fn=die_with_parent,
            **as_user(self.owner()),
        )
        if result.returncode != 0:
            output = tail(result.stdout + result.stderr)
            raise ServiceError(f"PostgreSQL: initdb failed ({result.returncode}):\n{output}")
        fresh.rename(home / "data")

    def argv(self, *, binaries: Path, home: Path, url: str, port: int) -> list[str]:
        # The socket's path has room for 107 bytes; a deeper checkout goes without one (the
        # URL is TCP anyway).
        sockets = str(home) if len(f"{home}/.s.PGSQL.{port}.lock") < 108 else ""
        argv = [str(binaries / "postgres"), "-D", str(home / "data"), "-p", str(port)]
        return [*argv, "-k", sockets, "-c", f"listen_addresses={HOST}"]

    def answers(self, url: str) -> bool:
        host, port = address(url, self.default_port)
        try:
            connection = psycopg.connect(
                host=host, port=port, user=_superuser(url), dbname="postgres", connect_timeout=1
            )
        except psycopg.OperationalError:
            return False
        connection.close()
        return True


class Redis(Server):
    name = "Redis"
    variable = "REDIS_URL"
    default_url = "redis://127.0.0.1:6379/0"
    default_port = 6379
    package = "redis-server"
    program = "redis-server"
    directory = "redis"
    stop_signal = signal.SIGTERM

    def find(self) -> Path | None:
        found = shutil.which("redis-server")
        return Path(found) if found else None

    def prepare(self, *, binaries: Path, home: Path, url: str) -> None:
        """Nothing: a private Redis keeps no data."""

    def argv(self, *, binaries: Path, home: Path, url: str, port: int) -> list[str]:
        argv = [str(binaries), "--bind", HOST, "--port", str(port), "--dir", str(home)]
        argv += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        password = urlsplit(url).password
        return [*argv, "--requirepass", password] if password else argv

    def answers(self, url: str) -> bool:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


POSTGRES = Postgres()
REDIS = Redis()
SERVERS: tuple[Server, ...] = (POSTGRES, REDIS)


# --- choosing and starting -----------------------------------------------------------------


def ensure(server: Server, url: str, run_dir: Path) -> Service:
    """The service the command should use for `server`, configured at `url`.

    1. Something listens at `url`: use it as it is.
    2. `url` is on another machine: nothing to start here, say so.
    3. A private instance another run started under run_dir answers: share it.
    4. Find the binaries, installing the package when they are missing (root with apt-get);
       if installing started the system service at `url`, use that.
    5. Start a private instance under run_dir.
    """
    host, port = address(url, server.default_port)
    running = Service(server.name, server.variable, url, f"{host}:{port} (running)")
    if listening(host, port):
        return running
    if host not in LOCAL_HOSTS:
        raise ServiceError(
            f"{server.name} is not answering at {host}:{port}, which is not this machine: "
            f"start it there, or point {server.variable} at one that runs"
        )
    home = run_dir / server.directory
    shared = shared_instance(server, home, url)
    if shared is not None:
        return shared
    binaries = server.find()
    if binaries is None:
        install(server)
        if listening(host, port):
            return running
        binaries = server.find()
        if binaries is None:
            raise ServiceError(
                f"{server.name}: {server.program} still missing after installing "
                f"{server.package}; install it by hand, or start {server.name} and point "
                f"{server.variable} at it"
            )
    return start_private(server, binaries=binaries, home=home, url=url)


def start_private(server: Server, *, binaries: Path, home: Path, url: str) -> Service:
    """Start a private instance in `home` on a free port and wait until it answers."""
    owner = server.owner()
    make_home(home, owner)
    server.prepare(binaries=binaries, home=home, url=url)
    log = home / f"{server.directory}.log"
    for _ in range(PORT_ATTEMPTS):
        port = free_port()
        private_url = with_port(url, port)
        log_start = log.stat().st_size if log.exists() else 0
        argv = server.argv(binaries=binaries, home=home, url=url, port=port)
        process = spawn(argv, log=log, owner=owner, death_signal=server.stop_signal)
        if wait_until_answers(server, process, private_url, log):
            instance_file = home / "instance"
            instance_file.write_text(f"{process.pid} {port}\n")
            where = f"private instance on {HOST}:{port} under {shown(home)}"
            return Service(
                server.name,
                server.variable,
                private_url,
                where,
                process,
                server.stop_signal,
                instance_file,
            )
        output = log.read_bytes()[log_start:].decode(errors="replace")
        if "Address already in use" not in output:
            raise ServiceError(
                f"{server.name}: the private instance exited {process.returncode}; its log "
                f"({shown(log)}) ends:\n{tail(output)}\n"
                f"To start afresh, remove {shown(home)}."
            )
    raise ServiceError(
        f"{server.name}: {PORT_ATTEMPTS} free ports in a row were taken before the private "
        "instance could bind one; try again"
    )


def wait_until_answers(
    server: Server, process: "subprocess.Popen[bytes]", url: str, log: Path
) -> bool:
    """True once it answers; False if it exited first. Stops it and raises after a timeout."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if server.answers(url):
            return True
        time.sleep(0.1)
    stop_process(process, server.stop_signal)
    raise ServiceError(
        f"{server.name}: the private instance did not answer within {READY_TIMEOUT:g} s; "
        f"see {shown(log)}"
    )


def shared_instance(server: Server, home: Path, url: str) -> Service | None:
    """A private instance another run (a `make up` in another terminal) started and still has.

    It is used but not stopped here: it stops with the run that started it.
    """
    try:
        pid, port = (int(word) for word in (home / "instance").read_text().split())
    except (OSError, ValueError):
        return None
    private_url = with_port(url, port)
    if not (alive(pid) and server.answers(private_url)):
        return None
    where = f"private instance on {HOST}:{port} under {shown(home)} (another run's; stops with it)"
    return Service(server.name, server.variable, private_url, where)


def install(server: Server) -> None:
    """Install the server's Debian package, noninteractive; only root with apt-get can."""
    apt_get = installer()
    if apt_get is None:
        raise ServiceError(
            f"{server.name}: {server.program} not found, and installing it needs root and "
            f"apt-get: install the {server.package} package, or start {server.name} and point "
            f"{server.variable} at it"
        )
    say(f"{server.name}: {server.program} not found; installing {server.package} with apt-get")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install_package = ["install", "-y", "-q", "--no-install-recommends", server.package]
    for arguments in (["update", "-q"], install_package):
        result = subprocess.run(
            [apt_get, *arguments],
            env=environment,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            output = tail(result.stdout + result.stderr)
            raise ServiceError(
                f"{server.name}: apt-get {' '.join(arguments)} failed ({result.returncode}):\n"
                f"{output}"
            )


def stop_process(process: "subprocess.Popen[bytes]", signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signum)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def installer() -> str | None:
    """apt-get, when we may use it: as root."""
    return shutil.which("apt-get") if os.geteuid() == 0 else None


def make_home(home: Path, owner: pwd.struct_passwd | None) -> None:
    """Create the instance's directory, owned by the user the instance runs as."""
    home.mkdir(parents=True, exist_ok=True)
    if owner is None:
        return
    home.parent.chmod(home.parent.stat().st_mode | 0o111)  # .run/ itself, whatever the umask
    os.chown(home, owner.pw_uid, owner.pw_gid)
    home.chmod(0o700)
    reach = subprocess.run(["test", "-w", str(home)], check=False, **as_user(owner))
    if reach.returncode != 0:
        raise ServiceError(
            f"{owner.pw_name} cannot reach {home}: a directory above it is closed to other "
            "users. Open it (chmod o+x) or run as another user than root"
        )


def spawn(
    argv: list[str], *, log: Path, owner: pwd.struct_passwd | None, death_signal: int
) -> "subprocess.Popen[bytes]":
    """Start a server in its own session (Ctrl-C at the terminal is not for it)."""
    with log.open("ab") as output:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: die_with_parent(death_signal),
            **as_user(owner),
        )


def as_user(owner: pwd.struct_passwd | None) -> dict[str, Any]:
    """subprocess arguments that run a child as `owner` with no groups of ours (None: as us)."""
    if owner is None:
        return {}
    return {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}


# --- running the command -------------------------------------------------------------------


@contextlib.contextmanager
def services(environ: Mapping[str, str], run_dir: Path = RUN_DIR) -> Iterator[dict[str, str]]:
    """Make sure PostgreSQL and Redis answer; yields DATABASE_URL and REDIS_URL to use.

    The private instances started here are stopped on the way out.
    """
    chosen: list[Service] = []
    try:
        for server in SERVERS:
            service = ensure(server, environ.get(server.variable) or server.default_url, run_dir)
            chosen.append(service)
            say(f"{service.name}: {service.where}")
        yield {service.variable: service.url for service in chosen}
    finally:
        for service in reversed(chosen):
            service.stop()


def run_command(argv: list[str], environment: Mapping[str, str]) -> int:
    """Run the command to its end, passing on signals sent to us alone; returns its status.

    The signals stay blocked here from then on, and are taken with sigtimedwait, which says who
    sent each one: a second Ctrl-C cannot cut the instances' stop short.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, PASSED_ON)
    try:
        child = subprocess.Popen(
            argv,
            env=dict(environment),
            preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK, previous),
        )
    except OSError as error:
        raise ServiceError(f"cannot run {argv[0]}: {error}") from None
    while child.poll() is None:
        received = signal.sigtimedwait(PASSED_ON, 0.2)
        if received is not None and received.si_code != SI_KERNEL:
            child.send_signal(received.si_signo)
    return child.returncode if child.returncode >= 0 else 128 - child.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.services",
        description="Run a command with a PostgreSQL and a Redis that answer "
        "(private ones under .run/ where the configured ones do not).",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    run = actions.add_parser("run", help="run COMMAND with DATABASE_URL and REDIS_URL set")
    run.add_argument("--run-dir", type=Path, default=RUN_DIR, help="default: .run/")
    run.add_argument("command", nargs="+", help="the command, after --")
    args = parser.parse_args(argv)
    try:
        with services(os.environ, args.run_dir) as urls:
            status = run_command(args.command, {**os.environ, **urls})
    except ServiceError as error:
        say(str(error))
        return 1
    except KeyboardInterrupt:  # Ctrl-C while the services were starting
        return 130
    return status


# --- small helpers -------------------------------------------------------------------------


def address(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or HOST, parts.port or default_port


def listening(host: str, port: int) -> bool:
    """Whether something takes connections at host:port (as ops.preflight checks)."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def with_port(url: str, port: int) -> str:
    """`url` aimed at 127.0.0.1:`port`, its user, password, path and query kept."""
    parts = urlsplit(url)
    credentials, _, _ = parts.netloc.rpartition("@")
    netloc = f"{credentials}@{HOST}:{port}" if credentials else f"{HOST}:{port}"
    return parts._replace(netloc=netloc).geturl()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, alive
    return True


def shown(path: Path) -> str:
    """`path` as the user would type it: relative to where they are, when it is below it."""
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def say(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _superuser(url: str) -> str:
    return urlsplit(url).username or getpass.getuser()


def _version(bindir: Path) -> tuple[int, ...]:
    """(15,) for /usr/lib/postgresql/15/bin; () for a name that is no version."""
    try:
        return tuple(int(part) for part in bindir.parent.name.split("."))
    except ValueError:
        return ()


def _locale() -> str:
    """C.UTF-8, as Debian's own clusters have, where the C library knows it; else C."""
    previous = locale.setlocale(locale.LC_CTYPE)
    try:
        locale.setlocale(locale.LC_CTYPE, "C.UTF-8")
    except locale.Error:
        return "C"
    locale.setlocale(locale.LC_CTYPE, previous)
    return "C.UTF-8"


if __name__ == "__main__":
    sys.exit(main())
