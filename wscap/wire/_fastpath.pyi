# The compiled record loop (wscap/wire/_fastpath.c); see wscap/wire/pcapio.py for the callers.
from typing import Any

API: int
ST_MORE: int
ST_FRAME: int
ST_SLOW: int
MAX_RECORD: int
RECENT: int          # flow/tcp.py RECENT, mirrored by the heads lane

def pcap_scan(buf: bytes, pos: int, big: bool, ts_mult: int, spec: tuple[Any, ...] | None, no: int, nbytes: int,
              first: int | None, last: int | None, linktype: int, source: int
              ) -> tuple[int, int, int, int, int | None, int | None, int, Any]: ...
def pcapng_scan(buf: bytes, pos: int, big: bool, ifaces: tuple[Any, ...], no: int, nbytes: int,
                first: int | None, last: int | None
                ) -> tuple[int, int, int, int, int | None, int | None, int, int, int, int, int, int, int]: ...
def clean_fields(raw: bytes, first: int, end: int, field_type: type) -> list[Any] | None: ...
def decode_tcp4(frame: Any, stats: Any, segment_type: type) -> Any: ...
def make(cls: type, *fields: Any) -> Any: ...
