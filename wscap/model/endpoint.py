"""`Endpoint(ip, port)`: one address of a leg, parsed from and formatted to `ip:port` in one place.

The JSON contract writes endpoints as `a.b.c.d:port` and `[v6]:port`; every stage that needs
the address or the port reads these fields instead of splitting the string again.
"""
from __future__ import annotations

from dataclasses import dataclass

from wscap.model.value import pickled_by_fields


@pickled_by_fields
@dataclass(frozen=True, slots=True, order=True)
class Endpoint:
    ip: str
    port: int

    @classmethod
    def parse(cls, text: str) -> "Endpoint":
        """`1.2.3.4:80` or `[::1]:80` -> Endpoint. A port that does not parse reads as 0 (never raises)."""
        host, port = split_endpoint(text)
        return cls(host, port if port is not None else 0)

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


def ip_of(text: str) -> str:
    """The address part of an `ip:port` string (what renderers need without the whole value)."""
    return text.rpartition(":")[0].strip("[]")


def split_endpoint(text: str) -> tuple[str, int | None]:
    """`"1.2.3.4:80"` -> `("1.2.3.4", 80)`; `"[::1]:80"` -> `("::1", 80)`; no port -> `(text, None)`.

    The one parser of `ip:port` text: documents, renderers and `slice` all read endpoints here."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = text, ""
    try:
        return host, int(port)
    except ValueError:
        return host, None
