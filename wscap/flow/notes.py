"""A connection's own anomalies and limit hits, bounded (the base of the session's state).

A hostile or very lossy capture can produce one connection-level anomaly per
segment (a gap, a conflict, a probe); at most PER_CODE of each code are listed,
the rest are counted and summarised (`suppressed`), and the cut is counted in
`limits_hit["anomalies"]`, which the owner reads.
"""
from __future__ import annotations

from wscap.model.anomaly import Anomaly, make

PER_CODE = 8          # connection-level anomalies listed per code (the rest are counted)


class Notes:
    __slots__ = ("anomalies", "noted", "limits_hit")

    def __init__(self) -> None:
        self.anomalies: list[Anomaly] = []
        self.noted: dict[str, int] = {}             # connection-level anomalies seen, per code
        self.limits_hit: dict[str, int] = {}

    def note(self, anomaly: Anomaly) -> None:
        """Connection-level anomalies, at most PER_CODE of each code: a hostile or very lossy
        capture can produce one per segment, and the count (tcp.gaps, suppressed) says the rest."""
        n = self.noted.get(anomaly.code, 0)
        self.noted[anomaly.code] = n + 1
        if n < PER_CODE:
            self.anomalies.append(anomaly)
        elif n == PER_CODE:
            self._hit("anomalies")

    def suppressed(self) -> list[Anomaly]:
        return [make("anomalies-suppressed", f"{n - PER_CODE} more '{code}' anomalies on this connection "
                     f"were not listed", None) for code, n in self.noted.items() if n > PER_CODE]

    def add(self, anomaly: Anomaly) -> None:
        """A connection-level anomaly the owner found (mid-stream start): always listed."""
        self.anomalies.append(anomaly)

    def _hit(self, name: str) -> None:
        self.limits_hit[name] = self.limits_hit.get(name, 0) + 1

