"""Where wscap looks for the Docker Engine API, without privileges or a daemon (issue 15).

The answers of a real dockerd (unix, tcp, TLS, contexts, refused, permission denied)
are tested in tests/test_docker_engine.py; here: the order of the endpoints, which
settings make an endpoint explicit, and the one-line reasons for endpoints that are
not there at all.
"""
from __future__ import annotations

import hashlib
import json
import socket

from wscap.capture import engine_api as ea


def urls(env: dict) -> tuple[list[str], bool]:
    eps, problems, explicit = ea.candidate_endpoints(env)
    assert problems == []
    return [e.url for e in eps], explicit


def test_default_order_and_rootless_paths():
    got, explicit = urls({"HOME": "/nonexistent", "SUDO_UID": "1000", "SUDO_USER": "nosuchuser-xyz"})
    assert not explicit
    assert got == ["unix:///var/run/docker.sock", "unix:///run/podman/podman.sock",
                   "unix:///run/user/1000/podman/podman.sock", "unix:///run/user/1000/docker.sock"]


def test_explicit_settings_are_tried_alone():
    got, explicit = urls({"WSCAP_DOCKER_SOCK": "/tmp/a.sock", "DOCKER_HOST": "tcp://10.1.2.3:2375",
                          "HOME": "/nonexistent"})
    assert explicit and got == ["unix:///tmp/a.sock", "tcp://10.1.2.3:2375"]
    got, explicit = urls({"DOCKER_HOST": "unix:///run/user/7/docker.sock", "HOME": "/nonexistent"})
    assert explicit and got == ["unix:///run/user/7/docker.sock"]


def test_tls_files_from_cert_path(tmp_path):
    for n in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / n).write_text("x")
    eps, _, _ = ea.candidate_endpoints({"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": "1",
                                        "DOCKER_CERT_PATH": str(tmp_path), "HOME": "/nonexistent"})
    tls = eps[0].tls
    assert tls == ea.TLSFiles(str(tmp_path / "ca.pem"), str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"), True)
    eps, _, _ = ea.candidate_endpoints({"DOCKER_HOST": "tcp://h:2375", "HOME": "/nonexistent"})
    assert eps[0].tls is None
    # a TLS setup that cannot load its files is a one-line reason, not a traceback
    c, why = ea.connect({"DOCKER_HOST": "tcp://127.0.0.1:1", "DOCKER_TLS_VERIFY": "1",
                         "DOCKER_CERT_PATH": str(tmp_path), "HOME": "/nonexistent"})
    assert c is None and "TLS setup failed" in why and "\n" not in why


def test_context_from_config(tmp_path):
    cfg = tmp_path / ".docker"
    digest = hashlib.sha256(b"remote").hexdigest()
    meta = cfg / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Name": "remote", "Endpoints": {"docker": {
        "Host": "tcp://192.0.2.9:2376", "SkipTLSVerify": False}}}))
    tlsd = cfg / "contexts" / "tls" / digest / "docker"
    tlsd.mkdir(parents=True)
    (tlsd / "ca.pem").write_text("x")
    (cfg / "config.json").write_text(json.dumps({"currentContext": "remote"}))
    eps, problems, explicit = ea.candidate_endpoints({"HOME": str(tmp_path)})
    assert explicit and [e.url for e in eps] == ["tcp://192.0.2.9:2376"]
    assert eps[0].source == "docker context remote" and eps[0].tls.ca == str(tlsd / "ca.pem")
    # DOCKER_HOST wins over the context, as with the docker CLI
    eps, _, _ = ea.candidate_endpoints({"HOME": str(tmp_path), "DOCKER_HOST": "unix:///x.sock"})
    assert [e.url for e in eps] == ["unix:///x.sock"]
    # a context whose metadata is missing is a reason, not a silent fallback
    eps, problems, explicit = ea.candidate_endpoints({"HOME": str(tmp_path), "DOCKER_CONTEXT": "gone"})
    assert explicit and eps == [] and "docker context 'gone'" in problems[0]
    c, why = ea.connect({"HOME": str(tmp_path), "DOCKER_CONTEXT": "gone"})
    assert c is None and "docker context 'gone'" in why


def test_unreachable_is_one_line(tmp_path):
    c, why = ea.connect({"WSCAP_DOCKER_SOCK": str(tmp_path / "none.sock"), "HOME": "/nonexistent"})
    assert c is None and why == ("container names unavailable: the configured Docker Engine API did not answer: "
                                 f"{tmp_path / 'none.sock'}: does not exist [WSCAP_DOCKER_SOCK]")
    c, why = ea.connect({"DOCKER_HOST": "ssh://me@host", "HOME": "/nonexistent"})
    assert c is None and "ssh:// endpoints are not supported" in why and "\n" not in why
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "dead.sock"))
    s.close()
    c, why = ea.connect({"DOCKER_HOST": f"unix://{tmp_path / 'dead.sock'}", "HOME": "/nonexistent"})
    assert c is None and "connection refused" in why and "is dockerd/podman running?" in why


def test_environment_read_at_call_time(monkeypatch, tmp_path):
    """Set after import, WSCAP_DOCKER_SOCK / DOCKER_HOST still decide (nothing cached at import)."""
    import wscap.capture.docker as d
    monkeypatch.setenv("WSCAP_DOCKER_SOCK", str(tmp_path / "first.sock"))
    c, why = d.engine()
    assert c is None and str(tmp_path / "first.sock") in why
    monkeypatch.setenv("WSCAP_DOCKER_SOCK", str(tmp_path / "second.sock"))
    c, why = d.engine()
    assert c is None and str(tmp_path / "second.sock") in why and "first.sock" not in why
