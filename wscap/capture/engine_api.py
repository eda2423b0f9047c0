"""Finding the Docker Engine API the way Docker users reach it, with only the standard library.

The Engine API is plain HTTP: over a unix socket (dockerd's /var/run/docker.sock,
Podman's Docker-compatible podman.sock, rootless Docker's $XDG_RUNTIME_DIR/docker.sock)
or over TCP (`DOCKER_HOST=tcp://host:2376`, TLS with the client certificates in
`DOCKER_CERT_PATH` when `DOCKER_TLS_VERIFY` is set). `http.client` + `ssl` speak all
of them, so there is no docker SDK dependency.

Which endpoint, in order (the first one that answers wins):

1. explicit ones, tried alone (as the docker CLI does: a configured engine that does
   not answer is reported, not silently replaced by another one):
   `WSCAP_DOCKER_SOCK` (a socket path; wscap's own override), `DOCKER_HOST`,
   `DOCKER_CONTEXT` or the current `docker context` (~/.docker/config.json
   `currentContext` → ~/.docker/contexts/meta/<sha256(name)>/meta.json);
2. otherwise the usual places: /var/run/docker.sock, Podman rootful
   (/run/podman/podman.sock), Podman rootless and rootless Docker in the invoking
   user's runtime dir ($XDG_RUNTIME_DIR, or /run/user/<uid>).

Under sudo, "the user" is SUDO_USER/SUDO_UID: their ~/.docker and their runtime dir.
Nothing here reads the environment at import time.

`connect()` returns (client, None) or (None, one line saying why names are
unavailable: which endpoints were tried, what each said, and how to fix the likely
cause: permission denied → docker group or sudo; refused → daemon not running; TLS).
"""
from __future__ import annotations

import hashlib
import json
import os
import pwd
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import urlsplit

if TYPE_CHECKING:
    # http.client (and with it email and ssl) is imported when an HTTP request is really made:
    # `wscap analyze` asks for names on every run, and with no engine socket it is not made at all.
    import http.client
    import ssl

DEFAULT_SOCK = "/var/run/docker.sock"
PODMAN_ROOTFUL_SOCK = "/run/podman/podman.sock"
MAX_BODY = 32 << 20          # an Engine API answer larger than this is refused (bounded)
DEFAULT_TIMEOUT = 3.0


class DockerError(Exception):
    """The Engine API could not be reached or answered an error."""


@dataclass(frozen=True)
class TLSFiles:
    """Client TLS material (the docker CLI's ca.pem / cert.pem / key.pem)."""

    ca: str | None
    cert: str | None
    key: str | None
    verify: bool = True


@dataclass(frozen=True)
class Endpoint:
    """One place an Engine API may answer."""

    url: str                  # unix:///path | tcp://host:port
    source: str               # where it came from: "DOCKER_HOST", "docker context x", "Podman (rootful)", ...
    tls: TLSFiles | None = None

    @property
    def display(self) -> str:
        u = urlsplit(self.url)
        return u.path if u.scheme == "unix" else self.url


def _unix_socket(path: str, timeout: float) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
    except OSError:
        s.close()
        raise
    return s


def _ssl_context(tls: TLSFiles) -> ssl.SSLContext:
    import ssl
    ctx = ssl.create_default_context(cafile=tls.ca if tls.verify and tls.ca else None)
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.cert and tls.key:
        ctx.load_cert_chain(tls.cert, tls.key)
    return ctx


class DockerClient:
    """Minimal read-only Engine API client (unix socket, plain TCP, or TCP + TLS).

    `DockerClient("/path/docker.sock")` keeps the old socket-path form working;
    `DockerClient(endpoint=Endpoint(...))` takes any endpoint.
    """

    def __init__(self, sock_path: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 endpoint: Endpoint | None = None):
        if endpoint is None:
            endpoint = Endpoint("unix://" + (sock_path or DEFAULT_SOCK), "socket")
        self.endpoint = endpoint
        self.timeout = timeout
        u = urlsplit(endpoint.url)
        self.scheme = u.scheme
        self.sock_path = u.path if u.scheme == "unix" else None
        self.host, self.port = u.hostname or "localhost", u.port
        if u.scheme not in ("unix", "tcp", "http", "https"):
            raise DockerError(f"{endpoint.url}: {u.scheme}:// endpoints are not supported "
                              "(forward the socket: ssh -nNT -L /tmp/docker.sock:/var/run/docker.sock HOST, "
                              "then DOCKER_HOST=unix:///tmp/docker.sock)")
        self._ctx = None
        if endpoint.tls is not None or u.scheme == "https":
            import ssl
            try:
                self._ctx = _ssl_context(endpoint.tls or TLSFiles(None, None, None))
            except (OSError, ssl.SSLError) as e:
                raise DockerError(f"{endpoint.display}: TLS setup failed: {_oserr(e)} "
                                  "(DOCKER_CERT_PATH must hold ca.pem, cert.pem and key.pem)") from e

    @property
    def display(self) -> str:
        return self.endpoint.display

    def _conn(self, sock: socket.socket | None) -> http.client.HTTPConnection:
        import http.client
        if sock is not None:          # a unix socket, already connected: HTTP goes over it
            conn = http.client.HTTPConnection("localhost", timeout=self.timeout)
            conn.sock = sock
            return conn
        port = self.port or (2376 if self._ctx else 2375)
        if self._ctx is not None:
            return http.client.HTTPSConnection(self.host, port, timeout=self.timeout, context=self._ctx)
        return http.client.HTTPConnection(self.host, port, timeout=self.timeout)

    def get(self, path: str) -> Any:
        sock = None
        if self.sock_path is not None:
            # Connected before any HTTP machinery is imported: a missing socket costs nothing.
            try:
                sock = _unix_socket(self.sock_path, self.timeout)
            except OSError as e:
                raise DockerError(f"{self.display}: {_oserr(e)}") from e
        import http.client
        import ssl
        conn = self._conn(sock)
        try:
            conn.request("GET", path, headers={"Host": "docker"} if self.sock_path else {})
            resp = conn.getresponse()
            body = resp.read(MAX_BODY + 1)
        except ssl.SSLError as e:
            raise DockerError(f"{self.display}: TLS error: {_tls_reason(e)}") from e
        except OSError as e:
            raise DockerError(f"{self.display}: {_oserr(e)}") from e
        except http.client.HTTPException as e:
            raise DockerError(f"{self.display}: bad HTTP answer: {e!r}") from e
        finally:
            conn.close()
        if len(body) > MAX_BODY:
            raise DockerError(f"GET {path}: answer larger than {MAX_BODY >> 20} MiB, ignored")
        if resp.status >= 400:
            try:
                msg = json.loads(body).get("message", "")
            except (ValueError, AttributeError):
                msg = body[:200].decode("latin-1").strip()
            raise DockerError(f"GET {path}: {resp.status} {msg}")
        try:
            return json.loads(body)
        except ValueError as e:
            raise DockerError(f"GET {path}: not JSON") from e

    def version(self) -> dict:
        """/version, fetched once per client."""
        v = getattr(self, "_version", None)
        if v is None:
            got = self.get("/version")
            v = self._version = got if isinstance(got, dict) else {}
        return v

    def is_podman(self) -> bool:
        """Podman serves the Docker-compatible API; its bridges are named podmanN, not br-<id>."""
        try:
            comps = self.version().get("Components") or []
        except DockerError:
            return False
        return any(isinstance(c, dict) and "podman" in str(c.get("Name", "")).lower() for c in comps)

    def available(self) -> bool:
        try:
            self.get("/version")
            return True
        except DockerError:
            return False

    def containers(self, all: bool = False) -> list[dict]:  # noqa: A002 - the API's own word
        res = self.get("/containers/json?all=1" if all else "/containers/json")
        return res if isinstance(res, list) else []

    def networks(self) -> list[dict]:
        res = self.get("/networks")
        return res if isinstance(res, list) else []

    def inspect(self, name: str) -> dict:
        from urllib.parse import quote
        res = self.get(f"/containers/{quote(name, safe='')}/json")
        return res if isinstance(res, dict) else {}


def _oserr(e: BaseException) -> str:
    if isinstance(e, FileNotFoundError):
        return "does not exist"
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "no answer (timed out)"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror[0].lower() + e.strerror[1:]
    return str(e) or type(e).__name__


def _tls_reason(e: ssl.SSLError) -> str:
    import ssl
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"server certificate not trusted ({e.verify_message})"
    return e.reason or str(e)


# ---- where the engine is -------------------------------------------------------------------

def invoking_user(environ: Mapping[str, str] | None = None) -> tuple[int, str | None]:
    """(uid, home) of the user who ran wscap: SUDO_UID/SUDO_USER under sudo, else us."""
    env = os.environ if environ is None else environ
    uid = int(env["SUDO_UID"]) if env.get("SUDO_UID", "").isdigit() else os.getuid()
    home = None
    try:
        if env.get("SUDO_USER"):
            home = pwd.getpwnam(env["SUDO_USER"]).pw_dir
        elif env.get("SUDO_UID", "").isdigit():
            home = pwd.getpwuid(uid).pw_dir
    except KeyError:
        home = None
    if home is None:
        home = env.get("HOME") or (pwd.getpwuid(uid).pw_dir if _has_uid(uid) else None)
    return uid, home


def _has_uid(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


def _docker_config_dir(env: Mapping[str, str], home: str | None) -> str | None:
    if env.get("DOCKER_CONFIG") and not env.get("SUDO_USER"):
        return env["DOCKER_CONFIG"]
    return os.path.join(home, ".docker") if home else None


def _tls_from_env(env: Mapping[str, str], cfg_dir: str | None) -> TLSFiles | None:
    verify = env.get("DOCKER_TLS_VERIFY", "") not in ("", "0")
    tls = env.get("DOCKER_TLS", "") not in ("", "0")
    if not (verify or tls):
        return None
    d = env.get("DOCKER_CERT_PATH") or cfg_dir or "."

    def f(n: str) -> str | None:
        p = os.path.join(d, n)
        return p if os.path.exists(p) else None
    return TLSFiles(ca=f("ca.pem"), cert=f("cert.pem"), key=f("key.pem"), verify=verify)


def _norm_host(host: str) -> str:
    if host.startswith("/"):
        return "unix://" + host
    if "://" not in host:
        return "tcp://" + host
    return host


def current_context(env: Mapping[str, str], cfg_dir: str | None) -> str | None:
    """The selected docker context: DOCKER_CONTEXT, else config.json's currentContext."""
    if env.get("DOCKER_CONTEXT"):
        return env["DOCKER_CONTEXT"]
    if not cfg_dir:
        return None
    try:
        with open(os.path.join(cfg_dir, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return None
    ctx = cfg.get("currentContext") if isinstance(cfg, dict) else None
    return ctx if isinstance(ctx, str) and ctx else None


def context_endpoint(name: str, cfg_dir: str) -> Endpoint | str:
    """The Endpoint of docker context `name`, or an error text."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = os.path.join(cfg_dir, "contexts", "meta", digest, "meta.json")
    try:
        with open(meta, encoding="utf-8") as f:
            doc = json.load(f)
        ep = doc["Endpoints"]["docker"]
        host = ep["Host"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"docker context {name!r}: cannot read {meta} ({type(e).__name__})"
    tls_dir = os.path.join(cfg_dir, "contexts", "tls", digest, "docker")
    tls = None
    if os.path.isdir(tls_dir) or ep.get("SkipTLSVerify"):
        def pem(n: str) -> str | None:
            p = os.path.join(tls_dir, n)
            return p if os.path.exists(p) else None
        tls = TLSFiles(ca=pem("ca.pem"), cert=pem("cert.pem"), key=pem("key.pem"), verify=not ep.get("SkipTLSVerify"))
    return Endpoint(_norm_host(str(host)), f"docker context {name}", tls)


def candidate_endpoints(environ: Mapping[str, str] | None = None) -> tuple[list[Endpoint], list[str], bool]:
    """(endpoints to try in order, problems met while finding them, explicit?)."""
    env = os.environ if environ is None else environ
    uid, home = invoking_user(env)
    cfg_dir = _docker_config_dir(env, home)
    eps: list[Endpoint] = []
    problems: list[str] = []
    if env.get("WSCAP_DOCKER_SOCK"):
        eps.append(Endpoint(_norm_host(env["WSCAP_DOCKER_SOCK"]), "WSCAP_DOCKER_SOCK"))
    if env.get("DOCKER_HOST"):
        eps.append(Endpoint(_norm_host(env["DOCKER_HOST"]), "DOCKER_HOST", _tls_from_env(env, cfg_dir)))
    elif cfg_dir or env.get("DOCKER_CONTEXT"):
        ctx = current_context(env, cfg_dir)
        if ctx and ctx != "default":
            got = context_endpoint(ctx, cfg_dir or ".")
            if isinstance(got, Endpoint):
                eps.append(got)
            else:
                problems.append(got)
    if eps or problems:
        return eps, problems, True
    eps.append(Endpoint("unix://" + DEFAULT_SOCK, "default"))
    eps.append(Endpoint("unix://" + PODMAN_ROOTFUL_SOCK, "Podman (rootful)"))
    runtime_dirs = []
    if env.get("XDG_RUNTIME_DIR") and not env.get("SUDO_UID"):
        runtime_dirs.append(env["XDG_RUNTIME_DIR"])
    if uid != 0:
        runtime_dirs.append(f"/run/user/{uid}")
    for d in dict.fromkeys(runtime_dirs):
        eps.append(Endpoint(f"unix://{d}/podman/podman.sock", "Podman (rootless)"))
        eps.append(Endpoint(f"unix://{d}/docker.sock", "rootless Docker"))
    return eps, problems, False


def _fix_hint(ep: Endpoint, err: str) -> str:
    if "permission denied" in err:
        return (f" (add yourself to the group owning {ep.display}: `sudo usermod -aG docker $USER`, "
                "log in again; or run wscap with sudo)")
    if "connection refused" in err and ep.url.startswith("unix://"):
        return " (the socket exists but no daemon listens: is dockerd/podman running?)"
    if "TLS" in err:
        return (" (DOCKER_CERT_PATH must hold this daemon's ca.pem and your cert.pem/key.pem; "
                "DOCKER_TLS_VERIFY=1 for tcp://…:2376)")
    if "400" in err and "HTTPS" in err:
        return " (the daemon speaks TLS: set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH)"
    return ""


def connect(environ: Mapping[str, str] | None = None,
            timeout: float = DEFAULT_TIMEOUT) -> tuple[DockerClient | None, str | None]:
    """The first Engine API that answers, or (None, one line saying why names are unavailable)."""
    eps, problems, explicit = candidate_endpoints(environ)
    tried: list[str] = list(problems)
    for ep in eps:
        try:
            client = DockerClient(endpoint=ep, timeout=timeout)
            client.version()
            return client, None
        except DockerError as e:
            msg = str(e)
            if not msg.startswith(ep.display):
                msg = f"{ep.display}: {msg}"
            label = "" if ep.source in ("default", "socket") else f" [{ep.source}]"
            tried.append(msg + label + _fix_hint(ep, msg))
    if explicit:
        head = "container names unavailable: the configured Docker Engine API did not answer: "
    else:
        head = ("container names unavailable: no Docker Engine API found (set DOCKER_HOST, e.g. "
                "unix:///run/docker.sock or tcp://HOST:2376): ")
    if not explicit and all(t.endswith("does not exist") or ": does not exist [" in t for t in tried):
        shown = ", ".join(ep.display for ep in eps)
        return None, head + f"none of {shown} exists"
    return None, head + "; ".join(tried)
