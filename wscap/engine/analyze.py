"""Offline entry point: capture files -> the JSON document, through the one pipeline."""
from __future__ import annotations

import dataclasses
import gc
import os
from functools import partial
from typing import Any, Callable, Iterable

from wscap.capture.files import ReadResult, read_frames
from wscap.engine import shards
from wscap.engine.core import Options, Pipeline
from wscap.engine.merge import absorb_file, export_file


def analyze_paths(paths: Iterable[str], options: Options | None = None,
                  progress: Callable[[int, int], None] | None = None) -> dict:
    """Analyse capture files into the JSON document (as a dict)."""
    return run_pipeline(paths, options, progress).document()


def run_pipeline(paths: Iterable[str], options: Options | None = None,
                 progress: Callable[[int, int], None] | None = None, jobs: int = 1,
                 notify: Callable[[str], None] | None = None) -> Pipeline:
    """Analyse capture files in order, as one timeline per file, into one document.

    Files are independent captures (frame numbers restart per file), so each is
    fed through the same pipeline with its own `source` index. `notify(line)` hears the
    reader's notices while a file is still being read (a gzip input that inflates hugely).
    """
    # The GC threshold that keeps a SYN flood fast is set by the command line
    # (wscap.cli.main.tune_gc), not here: a library does not change interpreter-wide state.
    paths = list(paths)
    if jobs > 1 and len(paths) > 1:
        return _run_parallel(paths, options, jobs, notify is not None)
    if shards.wanted(paths, options or Options()):
        pipe = shards.run(paths[0], options or Options(), partial(_feed_half, notify=notify), progress)
        if pipe is not None:
            return pipe
        # One process instead: what the abandoned half built is cyclic (connections and their
        # sessions) and the CLI's GC thresholds are high; free it now, not beside the new one.
        gc.collect()
    return _run(paths, options, progress, notify)


def _feed_half(pipe: Pipeline, path: str, size: int, progress: Callable[[int, int], None] | None,
               poll: Callable[[], None] | None, notify: Callable[[str], None] | None = None) -> dict:
    """engine/shards.py: feed the capture's first `size` bytes to a pipeline that keeps half of its flows."""
    res = ReadResult(path=path, notify=notify)
    _feed_file(pipe, 0, path, res, progress, poll, size)
    return _source_json(res, None)


def _feed_file(pipe: Pipeline, i: int, path: str, res: ReadResult,
               progress: Callable[[int, int], None] | None = None, poll: Callable[[], None] | None = None,
               max_bytes: int | None = None) -> None:
    """Every frame of capture file number i (up to `max_bytes`) into the pipeline, as source i."""
    space = AddressSpace()
    n = 0
    for frame in read_frames(path, res, source=i, record_filter=partial(_filter_of, pipe, i),
                             gzip_records_per_kib=pipe.limits.gzip_records_per_kib, max_bytes=max_bytes):
        pipe.feed(frame._replace(source=i) if frame.source != i else frame)
        n += 1
        if not n & 0x3FF:
            space.check()
            if poll is not None:
                poll()
            if progress is not None and not n & 0xFFFF:
                progress(i, n)
    if pipe.shard != 1:            # the other half's reader saw the same file: counted once
        _reader_limits(pipe, res)
    _take_names(pipe, res)


def _one_file(args: tuple) -> dict:
    """Worker: analyse file number i on its own, as source i; hand back views and the spool."""
    i, path, options, notices = args
    pipe = Pipeline(dataclasses.replace(options or Options(), stream=False))
    res = ReadResult(path=path, notify=_stderr_notice if notices else None)
    keylog = _attach_keylog(pipe, i, path, options)
    _feed_file(pipe, i, path, res)
    pipe.finish()
    pipe.sources = [_source_json(res, keylog)]
    return export_file(pipe)


def _stderr_notice(line: str) -> None:
    import sys
    sys.stderr.write(f"wscap: {line}\n")
    sys.stderr.flush()


def _reader_limits(pipe: Pipeline, res: ReadResult) -> None:
    """Bounds the capture reader hit (work per gzip input) count with the pipeline's."""
    for k, n in res.limits_hit.items():
        pipe.limits_hit[k] = pipe.limits_hit.get(k, 0) + n


def _run_parallel(paths: list[str], options: Options | None, jobs: int, notices: bool = False) -> Pipeline:
    """-j N: files are independent captures (flows never span two), so the per-packet work runs in
    N processes; linking and judging happen here over all files, exactly as in one process."""
    import multiprocessing
    pipe = Pipeline(dataclasses.replace(options or Options(), stream=False))
    with multiprocessing.get_context("fork").Pool(min(jobs, len(paths))) as pool:
        parts = pool.map(_one_file, [(i, p, options, notices) for i, p in enumerate(paths)], chunksize=1)
    for part in parts:
        absorb_file(pipe, part)
    return pipe


class AddressSpace:
    """A finite RLIMIT_AS (`ulimit -v`) is met at a safe point, not wherever an allocation fails.

    Running out of address space inside a generator's cleanup can leave CPython 3.11 retrying a
    failed allocation forever (seen: mmap failing ~6,000 times a second in the capture reader's
    `finally`, the process never reaching the CLI's one-line handler). With a finite limit, the
    record loop checks the process size every 1,024 frames and raises MemoryError itself while
    a margin is left. Without a limit (the usual case) this costs nothing."""

    MARGIN = 32 << 20

    def __init__(self) -> None:
        self.limit: int | None = None
        try:
            import resource
            soft = resource.getrlimit(resource.RLIMIT_AS)[0]
            if soft != resource.RLIM_INFINITY and soft > 0:
                self.limit = soft
                self.page = os.sysconf("SC_PAGE_SIZE")
        except (ImportError, OSError, ValueError):
            pass

    def check(self) -> None:
        if self.limit is None:
            return
        try:
            with open("/proc/self/statm", "rb") as f:
                size = int(f.read().split()[0]) * self.page
        except (OSError, ValueError, IndexError):
            return
        if size > self.limit - self.MARGIN:
            raise MemoryError(f"address space limit (RLIMIT_AS {self.limit >> 20} MiB) nearly reached")


def _run(paths: Iterable[str], options: Options | None,
         progress: Callable[[int, int], None] | None,
         notify: Callable[[str], None] | None = None) -> Pipeline:
    # Offline nobody consumes per-event output: only the final document.
    pipe = Pipeline(dataclasses.replace(options or Options(), stream=False))
    results: list[ReadResult] = []
    keylogs: list[dict | None] = []
    for i, path in enumerate(paths):
        res = ReadResult(path=path, notify=notify)
        results.append(res)
        keylogs.append(_attach_keylog(pipe, i, path, options))
        _feed_file(pipe, i, path, res, progress)
    pipe.finish()
    pipe.sources = [_source_json(r, k) for r, k in zip(results, keylogs)]
    return pipe


def _take_names(pipe: Pipeline, res: ReadResult) -> None:
    """Names a pcapng carries (Name Resolution Blocks) label its endpoints; the first file's win."""
    for ip, name in res.names.items():
        pipe.capture_names.setdefault(ip, name)


def _attach_keylog(pipe: Pipeline, source: int, path: str, options: Options | None) -> dict | None:
    """With --keylog, or secrets embedded in a pcapng (a Decryption Secrets Block, as `editcap
    --inject-secrets` writes), let tshark decrypt this file's TLS connections before wscap reads it."""
    from wscap.engine.decrypt import build_overlay, has_embedded_secrets, tshark_available
    keylog = options.keylog if options is not None else None
    embedded = has_embedded_secrets(path)
    if not keylog and not embedded:
        return None
    if not keylog and not tshark_available():
        return {"path": "secrets embedded in the pcapng", "decrypted": 0, "undecrypted": 0, "records_lost": 0,
                "withheld_frames": 0, "error": "the pcapng carries TLS secrets; install tshark to decrypt with them"}
    ov = build_overlay(path, keylog)
    if ov.frames:
        pipe.overlays[source] = ov
    label = (", ".join(options.keylog_sources) if keylog and options is not None and options.keylog_sources
             else keylog) or ""
    if embedded:
        label = " + ".join(x for x in (label, "secrets embedded in the pcapng") if x)
    return {"path": label, "decrypted": len(ov.hellos), "undecrypted": ov.undecrypted,
            "records_lost": ov.records_lost, "withheld_frames": ov.withheld, "error": ov.error}


def _source_json(res: ReadResult, keylog: dict | None) -> dict:
    out = res.to_json()
    if keylog is not None:
        out["keylog"] = keylog
    return out


def _filter_of(pipe: Pipeline, source: int, linktype: int) -> Any:
    """The pipeline's fast-path question for one input (functools.partial: a lambda in a loop
    would need a default argument to bind the input's number, which mypy cannot type)."""
    return pipe.record_filter(linktype, source)
