"""Live capture: the capture errors and configuration, the pcap stream parser, and the loop that
feeds the pipeline.

The default backends write the evidence in C and are followed from the file
(wscap.capture.evidence: `wscap-capture`, or `tcpdump -w`); this module keeps
what they share with the in-process one (``scapy``, wscap.capture.sockets):

* `PcapStreamReader`, wire/pcapio.py's incremental reader for a capture on a pipe.
* `LiveLoop`, the one place frames go: numbered from 1, fed to the streaming
  `Pipeline` (the same one `wscap analyze` runs), `Pipeline.tick()` every
  ~200 ms with capture time (the follower's watermark) so timeouts decide
  chains while the wire is quiet; shedding under overload; at the end a
  bounded drain of what was already captured, with every loss counted.
"""
from __future__ import annotations

import fcntl
import os
import selectors
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol

from wscap.model.raw import RawFrame
from wscap.wire.pcapio import CaptureReader, RecordFilter

# 64 KiB IP packet (GSO/GRO super-packets on veth included) + the largest link header
# we capture (SLL2: 20). Not tcpdump's 262144: in --immediate-mode libpcap sizes every
# ring slot for a full snaplen, so 4x smaller slots mean 4x more packets of slack
# before the kernel drops.
DEFAULT_SNAPLEN = 65560
DEFAULT_BUFFER_MB = 64



# ---- errors -----------------------------------------------------------------------------

class CaptureError(Exception):
    """A capture could not start; the message is for the user. Exit code 2."""

    kind = "capture"
    exit_code = 2


class NoSuchInterface(CaptureError):
    kind = "no-such-interface"


class NoPermission(CaptureError):
    kind = "permission"


class BadFilter(CaptureError):
    kind = "bad-filter"


class BackendMissing(CaptureError):
    kind = "backend-missing"


def _iface_error(iface: str) -> NoSuchInterface:
    from wscap.capture.ifaces import describe_missing
    return NoSuchInterface(describe_missing(iface))


def _perm_error(detail: str = "") -> NoPermission:
    from wscap.capture.privilege import permission_help
    msg = permission_help()
    return NoPermission((f"permission denied: {detail}\n" if detail else "permission denied\n") + msg)


def scapy_filter_detail(expr: str, msg: str) -> str:
    """libpcap's own words from scapy's "Failed to compile filter expression 'E' (why)"."""
    key = f"'{expr}' ("
    i = msg.find(key)
    if i >= 0 and msg.endswith(")"):
        return msg[i + len(key):-1]
    return msg


def _filter_error(expr: str, detail: str) -> BadFilter:
    return BadFilter(f"invalid capture filter (BPF): {expr!r}\n  {detail.strip()}\n"
                     "  see `man pcap-filter` for the syntax, e.g. 'tcp port 8080'")


# ---- configuration -------------------------------------------------------------------------

@dataclass
class CaptureConfig:
    iface: str = "any"
    bpf: str = "tcp"                 # wscap.cli.live.build_filter gives the real default
    snaplen: int = DEFAULT_SNAPLEN
    promisc: bool = True
    buffer_mb: int = DEFAULT_BUFFER_MB
    run_as: str | None = None        # tcpdump -Z USER (the user we drop to)
    timeout_ms: int = 10             # libpcap buffer timeout of wscap-capture: TPACKET_V3 block retire


# ---- streaming pcap reader -----------------------------------------------------------------

class PcapStreamReader(CaptureReader):
    """The incremental capture reader (wire/pcapio.py) for a capture on a pipe: feed() bytes as
    they arrive, get RawFrames numbered from `no` + 1 (the follower carries the count across
    files). A stream that is not a capture raises ValueError (the pipe is not what we started)."""

    def __init__(self, no: int = 0, record_filter: RecordFilter | None = None) -> None:
        from wscap.capture.follow import worth_at
        super().__init__(no, 0, record_filter, worth_at)

    def feed_iter(self, data: bytes) -> Iterator[RawFrame]:
        frames = super().feed_iter(data)
        if self.stopped and self.format == "unknown":
            raise ValueError(self.errors[-1])
        return frames


# ---- backend interface ---------------------------------------------------------------------

class Backend(Protocol):
    name: str
    linktype: int
    ended: bool               # the source ended by itself (interface gone, child died)
    end_reason: str | None

    def fileno(self) -> int: ...
    def read(self, max_frames: int = 4096) -> list[RawFrame]: ...
    def stats(self) -> dict[str, int]: ...
    def stop(self) -> None: ...
    def drain(self, timeout_s: float = 10.0) -> Iterable[RawFrame]: ...
    def close(self) -> None: ...


def _set_nonblock(fd: int) -> None:
    fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)


def _pdeathsig() -> None:
    # Child side of tcpdump: die with us even on SIGKILL, so no capture is left running.
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# ---- the loop --------------------------------------------------------------------------------

@dataclass
class LiveResult:
    packets: int = 0
    received: int = 0          # as counted by the backend/kernel
    dropped: int = 0           # kernel drops from the backend's statistics
    reason: str = "stopped"    # why capture ended
    interface_gone: bool = False
    events: int = 0
    elapsed: float = 0.0
    written: int = 0           # packets the evidence writer put in the file(s)
    analysed: int = 0          # frames fed to the analysis
    shed: int = 0              # frames read but not analysed (overload: see ShedState)
    unanalysed: int = 0        # frames written but never read (drain bound, or files overwritten)
    lag_max_s: float = 0.0     # the analysis's worst delay behind the writer, capture time
    lag_s: float = 0.0         # ... at the end
    extra: dict[str, Any] = field(default_factory=dict)


class LiveLoop:
    """Runs a backend into the pipeline (and writer) until something stops it.

    `pipeline` may be None (benchmarks, backends tested on their own); then
    frames are only counted/written and handed to `on_frame`.
    """

    def __init__(self, backend: Backend, pipeline: Any = None, writer: Any = None,
                 on_event: Callable[[Any], None] | None = None,
                 on_status: Callable[[dict], None] | None = None,
                 on_frame: Callable[[RawFrame], None] | None = None,
                 on_notice: Callable[[str], None] | None = None,
                 duration: float | None = None, count: int | None = None,
                 tick_s: float = 0.2, status_s: float = 0.5, source: int = 0,
                 shed_after_s: float = 0.0, drain_s: float = 30.0):
        # A Backend; when it follows a file (follows_file) FollowBackend's extras are used too.
        self.backend: Any = backend
        self.pipeline = pipeline
        if writer is None and hasattr(backend, "use_fast_path"):
            backend.use_fast_path(pipeline)    # settled flows skipped per record, as in `analyze`
        self.writer = writer
        self.on_event = on_event
        self.on_status = on_status
        self.on_frame = on_frame
        self.on_notice = on_notice
        self.duration = duration
        self.count = count
        self.tick_s = tick_s
        self.status_s = status_s
        self.source = source
        self.result = LiveResult()
        from wscap.capture.follow import ShedState
        self.shed = ShedState(shed_after_s)
        self.drain_s = drain_s
        self._stop_reason: str | None = None
        self._hurry = False       # a second signal: stop analysing what is left
        self._no = 0
        self._start = 0.0

    def stop(self, reason: str = "stopped") -> None:
        """Signal-safe: just records the request; the loop notices within one tick.

        A second request while already stopping cuts the analysis drain short
        (what is left unanalysed is counted; the file is complete either way)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        else:
            self._hurry = True

    @property
    def stopping(self) -> bool:
        return self._stop_reason is not None

    def _emit(self, events: list | None) -> None:
        if not events:
            return
        self.result.events += len(events)
        if self.on_event:
            for ev in events:
                self.on_event(ev)

    def _handle(self, frames: list[RawFrame]) -> None:
        pipe, writer, on_frame, src = self.pipeline, self.writer, self.on_frame, self.source
        # Following a file the C writer wrote: frames are taken as the file holds them
        # (a re-analysis gives the same verdicts), numbered before any shedding so that
        # frame N is always the file's frame N, and --count is the writer's job.
        follows_file = writer is None and hasattr(self.backend, "watermark_ns")
        # Following a file, the reader itself sheds (before a frame is even built).
        shedding = not follows_file and self.shed.active
        if shedding:
            from wscap.capture.follow import worth_analysing
        for f in frames:
            if self.count is not None and self._no >= self.count and not follows_file:
                self.stop(f"--count {self.count} reached")
                return
            if follows_file:
                # The follower numbered it as the file holds it (frame N is Wireshark's N);
                # records the fast path accounted for never became frames.
                self._no = f.no
                if src:
                    f = f._replace(source=src)
            else:
                self._no += 1
                # µs timestamps, as the pcap we write has: the live verdicts then match
                # a re-analysis of the written file to the last digit.
                f = f._replace(no=self._no, source=src, ts_ns=f.ts_ns - f.ts_ns % 1000)
            if writer is not None:
                writer.write(f)
            if on_frame is not None:
                on_frame(f)
            if pipe is None:
                continue
            if shedding and not worth_analysing(f):
                self.shed.note(f)
                continue
            try:
                self._emit(pipe.feed(f))
            except Exception as e:  # noqa: BLE001
                self._analysis_failed(e)
                pipe = None
        if follows_file:
            self._no = max(self._no, self.backend.follower.frames)
        if self.count is not None and self._no >= self.count and not follows_file:
            self.stop(f"--count {self.count} reached")

    @property
    def follows_file(self) -> bool:
        return self.writer is None and hasattr(self.backend, "watermark_ns")

    def status(self) -> dict:
        st = self.backend.stats()
        flows = None
        if self.pipeline is not None:
            st_p = getattr(self.pipeline, "stats", None) or {}
            flows = st_p.get("flows_tracked", st_p.get("flows"))
        d = {"packets": self._no, "received": st.get("received", 0), "dropped": st.get("dropped", 0),
             "flows": flows, "decided": self.result.events,
             "elapsed": time.monotonic() - self._start}
        if self.writer is not None:
            d["written"] = self.writer.packets
            d["write_error"] = self.writer.error
        elif "written" in st:
            d["written"] = st["written"]
        if self.follows_file:
            d["lag_s"] = self.result.lag_s
            d["shed"] = self.shed.shed
        return d

    def _update_lag(self) -> None:
        lag = self.backend.lag_s(time.time_ns())
        self.result.lag_s = lag
        if lag > self.result.lag_max_s:
            self.result.lag_max_s = lag
        self.shed.update(lag)
        fol = self.backend.follower
        fol.shedding = self.shed.active
        self.shed.shed = fol.shed

    def run(self) -> LiveResult:
        b = self.backend
        follows = self.follows_file
        poll_iv = getattr(b, "poll_interval", None) if follows else None
        sel = selectors.DefaultSelector()
        sel.register(b.fileno(), selectors.EVENT_READ)
        self._start = now = time.monotonic()
        next_tick = now + self.tick_s
        next_status = now + self.status_s
        deadline = now + self.duration if self.duration is not None else None
        try:
            while self._stop_reason is None:
                now = time.monotonic()
                wake = min(next_tick, next_status, deadline if deadline is not None else next_tick)
                if poll_iv:
                    wake = min(wake, now + poll_iv)
                if follows and b.more_ready:
                    wake = now
                ready = sel.select(max(0.0, wake - now)) if wake > now else sel.select(0)
                if ready or follows:
                    self._handle(b.read_iter() if follows else b.read())
                    notices = getattr(b, "notices", None)
                    while notices:
                        msg = notices.pop(0)
                        if self.on_notice:
                            self.on_notice(msg)
                if b.ended:
                    self.result.interface_gone = "went away" in (b.end_reason or "") or \
                        "ifgone" in (b.end_reason or "")
                    reason = b.end_reason or "capture ended"
                    if reason == "count" and self.count is not None:
                        reason = f"--count {self.count} reached"
                    self.stop(reason)
                    break
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    self.stop(f"--duration {self.duration:g}s elapsed")
                if follows:
                    self._update_lag()
                if now >= next_tick:
                    next_tick = now + self.tick_s
                    if self.pipeline is not None:
                        # Decisions in capture time: the watermark up to which the file has
                        # been read, never the wall clock (a lagging analysis would otherwise
                        # call `no-response` an answer it has not read yet).
                        ts = b.watermark_ns(time.time_ns()) if follows else time.time_ns()
                        try:
                            self._emit(self.pipeline.tick(ts))
                        except Exception as e:  # noqa: BLE001
                            self._analysis_failed(e)
                    if self.writer is not None:
                        self.writer.flush()
                if now >= next_status:
                    next_status = now + self.status_s
                    if self.on_status:
                        self.on_status(self.status())
        finally:
            sel.close()
            self._shutdown()
        return self.result

    def _drain_followed(self) -> None:
        """After stop: the writer flushes and ends; read its file to the end, within drain_s."""
        b = self.backend
        deadline = time.monotonic() + self.drain_s
        while not self._hurry and time.monotonic() < deadline:
            before = b.frames_read
            self._handle(b.read_iter())
            if b.frames_read != before:
                continue
            if b.ended:
                break
            if b.writer.wait(0.02) is None:
                time.sleep(0.005)
        if not b.ended:
            # Analysis time is up (or a second signal): the writer still finishes its file.
            b.writer.wait(10)
            self.result.extra["drain_cut"] = "second signal" if self._hurry else f"after {self.drain_s:g} s"

    def _shutdown(self) -> None:
        b = self.backend
        self.result.reason = self._stop_reason or "stopped"
        st: dict[str, int] = {}
        try:
            try:
                b.stop()
                if self.follows_file:
                    self._drain_followed()
                # What the backend already captured is handed over (bounded by drain()).
                elif self.count is None or self._no < self.count:
                    batch: list[RawFrame] = []
                    for f in b.drain():
                        batch.append(f)
                        if len(batch) >= 1024:
                            self._handle(batch)
                            batch = []
                    self._handle(batch)
                else:
                    for _ in b.drain():
                        pass
                st = b.stats()
                if self.follows_file:
                    b._pump()
                    st = b.stats()
                    self.result.written = st.get("written", 0)
                    if getattr(b.writer, "flush", None) is None:
                        # tcpdump counts what it captured, not what reached the file: count the file.
                        self.result.written = self._no + b.follower.count_unread()
                    self.result.unanalysed = max(0, self.result.written - self._no)
                    self.result.extra["skipped_files"] = list(b.follower.skipped_files)
                    self.result.extra["truncated_files"] = list(b.follower.truncated)
                    self._update_lag()
                    if self.result.unanalysed == 0:
                        self.result.lag_s = 0.0
            finally:
                b.close()
            self.result.packets = self._no
            self.result.shed = self.shed.shed
            if self.pipeline is not None or "analysis_error" not in self.result.extra:
                self.result.analysed = self._no - self.shed.shed
            self.result.received = st.get("received", 0)
            self.result.dropped = st.get("dropped", 0)
            self.result.elapsed = time.monotonic() - self._start
            if self.pipeline is not None:
                try:
                    self._emit(self.pipeline.finish())
                except Exception as e:  # noqa: BLE001 - see _analysis_failed
                    self._analysis_failed(e)
        finally:
            # Whatever failed above, the capture file is completed.
            if self.writer is not None:
                self.writer.close()

    def _analysis_failed(self, e: Exception) -> None:
        """A bug in the analysis must not cost the capture: report it, stop analysing,
        keep capturing and writing (the file can be re-analysed once fixed)."""
        import traceback
        where = traceback.format_exception_only(type(e), e)[-1].strip()
        self.result.extra["analysis_error"] = f"frame {self._no}: {where}"
        self.pipeline = None
        if hasattr(self.backend, "use_fast_path"):
            self.backend.use_fast_path(None)
        if self.on_notice:
            self.on_notice(f"analysis failed at frame {self._no} ({where}); capture and --write "
                           "go on without analysis")
