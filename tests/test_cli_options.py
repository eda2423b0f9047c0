"""The options every command shares (wscap.cli.options): one set of bounds, one names precedence,
one redaction default, one exit-code table - for analyze, report, slice and live alike."""
from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from wscap.cli.live import _make_pipeline, live_command
from wscap.cli.live_output import live_exit
from wscap.cli.main import main
from wscap.cli.options import (EXIT_BROKEN, EXIT_INPUT, EXIT_OK, FILE_BOUNDS, exit_code, limits_from, merged_names,
                               read_names, redacts)
from wscap.model.limits import Limits

# The documented ranges (docs/cli.md "Errors and exit codes", docs/reference.md "Resource bounds").
DOC_MIN = {"--max-flows": 1, "--max-head-bytes": 256, "--max-flow-buffer": 1024, "--max-frames": 0,
           "--max-dns": 0, "--max-handshakes": 1}


def bounds(cmd: click.Command) -> dict[str, tuple[object, object, object]]:
    return {o: (p.type.min, p.type.max, p.default)                       # type: ignore[attr-defined]
            for p in cmd.params for o in p.opts if o.startswith("--max-")}


def test_every_command_has_the_same_bounds():
    """The same bounds everywhere; the bounds of reading files (gzip work) where files are read."""
    per_cmd = {name: bounds(main.commands[name]) for name in ("analyze", "report", "slice", "live")}
    assert per_cmd["analyze"] and all(b == per_cmd["analyze"] for n, b in per_cmd.items() if n != "live"), per_cmd
    file_only = {f"--{name}" for name, *_ in FILE_BOUNDS}
    assert file_only and file_only <= set(per_cmd["analyze"]) and not file_only & set(per_cmd["live"])
    assert per_cmd["live"] == {k: v for k, v in per_cmd["analyze"].items() if k not in file_only}
    for opt, lo in DOC_MIN.items():
        assert per_cmd["live"][opt][0] == lo, opt
    d = Limits()
    assert per_cmd["live"]["--max-head-bytes"][2] == d.head_bytes
    assert per_cmd["live"]["--max-tunnel-depth"][:2] == (0, 64)


def test_live_refuses_what_analyze_refuses():
    """A header-block bound under 256 was accepted by live only; now both refuse it (exit 2)."""
    for cmd in (["analyze", "x.pcap"], ["live"]):
        r = CliRunner().invoke(main, [*cmd, "--max-head-bytes", "100"])
        assert r.exit_code == 2 and "--max-head-bytes" in r.output, (cmd, r.output)


def test_limits_from_maps_every_option_to_its_field():
    lim = limits_from({"max_head_bytes": 999, "max_flows": 7, "max_frames": 3, "max_tunnel_depth": 2,
                       "max_handshakes": 5, "max_inflate_bytes": 11})
    assert (lim.head_bytes, lim.max_flows, lim.frames_per_direction, lim.tunnel_depth, lim.max_handshakes,
            lim.inflate_bytes) == (999, 7, 3, 2, 5, 11)
    assert lim.max_dns == Limits().max_dns                  # not given: the default
    assert limits_from(None) == Limits()


def test_names_precedence_is_the_same_offline_and_live(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("172.18.0.2 from-file alias\n# comment\n172.18.0.2 second-line-loses\n[fd00::1] v6\n")
    given = read_names(str(hosts))
    assert given == {"172.18.0.2": "from-file", "fd00::1": "v6"}
    docker = {"172.18.0.2": "from-docker", "172.18.0.3": "docker-b"}
    assert merged_names(given, docker) == {"172.18.0.2": "from-file", "172.18.0.3": "docker-b", "fd00::1": "v6"}
    pipe = _make_pipeline(3.0, given, None, fallback=docker)
    assert dict(pipe.options.names) == given and dict(pipe.options.names_fallback) == docker


def test_redaction_default():
    for fmt in ("table", "text", "markdown", "html", "csv", "report"):
        assert redacts(None, fmt) is True, fmt
    for fmt in ("json", "har"):
        assert redacts(None, fmt) is False, fmt
    assert redacts(False, "table") is False and redacts(True, "json") is True


def doc(broken: int = 0, with_errors: int = 0, dropped: int = 0, errors: list[str] | None = None) -> dict:
    return {"source": [{"errors": errors or []}], "summary": {"broken": broken, "with_errors": with_errors},
            "stats": {"limits_hit": {"max_handshakes": dropped} if dropped else {}}}


def test_one_exit_code_table():
    assert exit_code(doc()) == EXIT_OK == 0
    assert exit_code(doc(broken=1)) == EXIT_BROKEN == 1
    assert exit_code(doc(with_errors=1)) == EXIT_BROKEN
    assert exit_code(doc(dropped=3)) == EXIT_INPUT == 2             # partial document
    assert exit_code(doc(broken=1, errors=["x.pcap: truncated"])) == EXIT_INPUT


def test_live_exit_uses_the_same_table():
    live_doc = {k: v for k, v in doc(with_errors=1).items() if k != "source"}    # live has no sources
    assert live_exit(live_doc, None, 0) == EXIT_BROKEN       # was 0: live counted only summary.broken
    assert live_exit({k: v for k, v in doc(dropped=1).items() if k != "source"}, None, 0) == EXIT_INPUT
    assert live_exit({}, None, 0) == EXIT_OK                # no analysis document (capture only)
    assert live_exit({}, None, EXIT_BROKEN) == EXIT_BROKEN  # the decrypted report found a broken chain
    assert live_exit(doc(), "document: boom", 0) == EXIT_INPUT


@pytest.mark.parametrize("cmd", ["analyze", "report", "slice", "live"])
def test_names_help_says_it_wins(cmd):
    opts = {o: p for p in main.commands[cmd].params for o in p.opts}
    if "--names" not in opts:
        pytest.skip(f"{cmd} has no --names")
    text = opts["--names"].help or ""
    assert "fallback when" not in text and "wins over" in text, text


def test_live_command_is_registered_once():
    assert main.commands["live"] is live_command


def test_a_command_run_in_process_leaves_the_interpreter_as_it_was():
    """The CLI tunes the GC and hooks unraisable errors for its run only (tests and embedding
    programs run it in-process: a lasting change made later tests' memory peaks differ)."""
    import gc
    import sys
    threshold, hook = gc.get_threshold(), sys.unraisablehook
    r = CliRunner().invoke(main, ["analyze", "--format", "json", "does-not-exist.pcap"])
    assert r.exit_code == 2
    assert gc.get_threshold() == threshold and sys.unraisablehook is hook
