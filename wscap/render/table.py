"""Terminal rendering: chain verdicts first, then the handshake table.

Pure functions of the JSON document. Every value that came from the network
goes through `term()` first, so ANSI escapes and control characters in header
values cannot drive the analyst's terminal; colour (click.style) is added after
that, by wscap itself, only when the caller asks for it (`Look`).

Layout honours a width (the terminal's, from the CLI): sentences are wrapped,
tables are narrowed by cutting their widest free-text columns (with `…`), a
ladder breaks between hops. `width=None` (the default for callers that are not
a terminal) wraps nothing.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from collections.abc import Mapping, Sequence
from typing import Any, cast

import click

from wscap.document.spool import SpooledList
from wscap.render.escape import term
from wscap.render.mermaid import handshake_index
from wscap.model.endpoint import split_endpoint

# Handshake rows shown without -v when the capture has more (the verdicts come first anyway).
TABLE_ROWS = 30
# Breaking rows of one diff shown without -v.
DIFF_ROWS = 12


@dataclass(frozen=True)
class Look:
    """How to draw: colour on/off and the width to fit (None: no wrapping)."""
    color: bool = False
    width: int | None = None

    def s(self, text: str, **style: Any) -> str:
        return click.style(text, **style) if self.color and text and style else text

    def bad(self, text: str) -> str:
        return self.s(text, fg="red", bold=True)

    def good(self, text: str) -> str:
        return self.s(text, fg="green")

    def dim(self, text: str) -> str:
        return self.s(text, dim=True)

    def head(self, text: str) -> str:
        return self.s(text, bold=True)

    def wrap(self, text: str, indent: int, first: str | None = None) -> list[str]:
        """`text` as lines indented by `indent` (the first line may carry its own prefix)."""
        pad = " " * indent
        lead = pad if first is None else first
        if self.width is None:
            return [lead + text]
        w = max(self.width, indent + 20)
        return textwrap.wrap(text, w, initial_indent=lead, subsequent_indent=pad,
                             break_long_words=False, break_on_hyphens=False) or [lead]


PLAIN = Look()


def _hdr(h: dict, part: str, name: str) -> str:
    msg = h.get(part)
    if not msg:
        return ""
    for n, v in msg["headers"]:
        if n.lower() == name:
            return v
    return ""


def _names(doc: dict) -> dict[str, str]:
    return {e["ip"]: e["name"] for e in doc.get("endpoints", []) if e.get("name")}


def label(ep: str, names: dict[str, str]) -> str:
    ip, port = split_endpoint(ep)
    name = names.get(ip)
    return f"{name}:{port}" if name and port is not None else ep


# ---- tables that fit ---------------------------------------------------------------------

def _cut(text: str, w: int) -> str:
    return text if len(text) <= w else text[:max(w - 1, 0)] + "…"


def fit_table(headers: list[str], rows: list[list], width: int | None,
              shrink: tuple[int, ...] | tuple[tuple[int, ...], ...] = (),
              right: tuple[int, ...] = (), indent: int = 0,
              wrap_last: bool = False) -> tuple[list[str], list[str]]:
    """(header lines, one line per row) in tabulate's "simple" style, narrowed to `width`.

    When the table is too wide, the columns in `shrink` give up characters, the widest first,
    down to a few each; their cells are cut with `…`. Other columns keep their width.
    `shrink` may be tiers (a tuple of tuples): a later tier gives up characters only when the
    earlier ones are at their floor."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    if width is not None:
        tiers: list[tuple[int, ...]] = ([tuple(cast(tuple[int, ...], t)) for t in shrink]
                                        if shrink and isinstance(shrink[0], tuple) else [cast(tuple[int, ...], shrink)])
        over = indent + sum(widths) + 2 * (len(widths) - 1) - width
        for tier in tiers:
            floor = {i: max(6, min(len(headers[i]), 10)) for i in tier}
            while over > 0:
                cands = [i for i in tier if widths[i] > floor[i]]
                if not cands:
                    break
                i = max(cands, key=lambda k: widths[k])
                widths[i] -= 1
                over -= 1

    last = len(headers) - 1

    def line(vals: list[str]) -> str:
        out = []
        for i, v in enumerate(vals):
            if wrap_last and i == last and len(v) > widths[i]:
                pieces = textwrap.wrap(v, widths[i], break_on_hyphens=False, drop_whitespace=True) or [v]
                pad = " " * (indent + sum(widths[:i]) + 2 * i)
                out.append(pieces[0])
                return (" " * indent + "  ".join(out)) + "".join("\n" + pad + p for p in pieces[1:])
            v = _cut(v, widths[i])
            out.append(v.rjust(widths[i]) if i in right else v.ljust(widths[i]))
        return (" " * indent + "  ".join(out)).rstrip()

    head = [line(list(headers)), " " * indent + "  ".join("-" * w for w in widths)]
    return head, [line(r) for r in cells]


# ---- handshakes ------------------------------------------------------------------------

def handshake_rows(doc: dict) -> list[list[str]]:
    names = _names(doc)
    return [_handshake_row(h, names) for h in doc["handshakes"]]


def _handshake_row(h: dict, names: dict[str, str]) -> list:
    req = h.get("request") or {}
    errs = [a["code"] for a in h["anomalies"] if a["severity"] == "error"]
    warns = [a["code"] for a in h["anomalies"] if a["severity"] != "error"]
    return [
        h["id"], term(label(h["client"], names)), term(label(h["server"], names)),
        term(req.get("target", "—"))[:48] + (" (h2)" if h.get("http_version") == "2" else ""),
        h["status"] if h["status"] is not None else "—",
        h["outcome"], h["first_frame"],
        ", ".join(dict.fromkeys(errs + warns))[:70] or "—",
    ]


def handshake_line(h: dict, names: dict[str, str] | None = None, look: Look = PLAIN) -> str:
    """One line per decided handshake (live output)."""
    names = names or {}
    req = h.get("request") or {}
    errs = [a["code"] for a in h["anomalies"] if a["severity"] == "error"]
    result = f"{h['status'] if h['status'] is not None else h['outcome']} [{h['outcome']}]"
    if h["outcome"] != "upgraded":
        result = look.s(result, fg="yellow")
    return (f"#{h['id']} {term(label(h['client'], names))} → {term(label(h['server'], names))} "
            f"{term(req.get('method', ''))} {term(req.get('target', ''))[:60]} → {result}"
            + (look.bad(f" ! {', '.join(dict.fromkeys(errs))}") if errs else ""))


def handshake_table(doc: dict, look: Look = PLAIN, limit: int | None = None) -> list[str]:
    names = _names(doc)
    total = len(doc["handshakes"])
    keep = None if limit is None or total <= limit else _pick_ids(doc, limit)
    shown = []
    with_error: set = set()           # ids of shown handshakes with an error anomaly (one pass, no scan per row)
    for h in doc["handshakes"]:
        if keep is not None and h["id"] not in keep:
            continue
        shown.append(_handshake_row(h, names))
        if any(a["severity"] == "error" for a in h["anomalies"]):
            with_error.add(h["id"])
    table = [[r[0], r[1], r[2], r[3], f"{r[4]} {r[5]}", r[6], r[7]] for r in shown]
    headers = ["id", "client", "server", "target", "result", "frame", "anomalies"]
    if look.width is not None and table:
        # Addresses are what a reader matches against the ladders: keep them whole. When the
        # free-text columns at their floor still do not fit, the frame column goes first
        # (it is in -v and the JSON).
        w = [max([len(h)] + [len(str(t[i])) for t in table]) for i, h in enumerate(headers)]
        if sum(w) - w[3] - w[6] + min(w[3], 10) + min(w[6], 10) + 2 * (len(w) - 1) > look.width:
            headers, table = headers[:5] + headers[6:], [t[:5] + t[6:] for t in table]
    anom = len(headers) - 1
    head, lines = fit_table(headers, table, look.width, shrink=((3, anom), (1, 2), (4,)),
                            right=(0, 5) if anom == 6 else (0,))
    out = [look.head(head[0]), head[1]]
    for r, text in zip(shown, lines):
        if r[7] != "—" and r[0] in with_error:
            text = look.bad(text)
        elif r[5] != "upgraded":
            text = look.s(text, fg="yellow")
        out.append(text)
    if len(shown) < total:
        out.append(look.dim(f"… {total - len(shown)} more handshake(s) (-v lists them all)"))
    return out


def _pick_ids(doc: dict, limit: int) -> set:
    """Without -v on a big capture: the handshakes of broken chains and troubled ones first.
    The `limit` smallest (rank, id) in one pass with a bounded heap (rows are made only for them)."""
    import heapq
    broken = {i for c in doc.get("chains", []) if c["verdict"]["broken"] for i in c["hops"]}
    heap: list = []                       # (-rank, -id): the worst of the kept on top
    for h in doc["handshakes"]:
        troubled = h["outcome"] != "upgraded" or bool(h["anomalies"])
        item = (-(0 if h["id"] in broken else 1 if troubled else 2), -h["id"])
        if len(heap) < limit:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)
    return {-i for _, i in heap}


# ---- chains ----------------------------------------------------------------------------

def ladder_parts(chain: dict, by_id: Mapping[int, dict], names: dict[str, str], look: Look = PLAIN) -> list[str]:
    hops = [by_id[i] for i in chain["hops"] if i in by_id]
    if not hops:
        return []
    parts = [term(label(hops[0]["client"], names))]
    for i, h in enumerate(hops):
        st = h["status"] if h["status"] is not None else h["outcome"]
        step = f"[{st} ✗]" if chain["verdict"]["hop"] == i else f"[{st}]"
        if chain["verdict"]["hop"] == i:
            step = look.bad(step)
        parts.append(f"─{step}→ {term(label(h['server'], names))}")
    return parts


def ladder(chain: dict, by_id: dict[int, dict], names: dict[str, str], look: Look = PLAIN) -> str:
    return " ".join(ladder_parts(chain, by_id, names, look))


def _ladder_lines(parts: list[str], indent: int, width: int | None, lead: str | None = None) -> list[str]:
    """The ladder, broken between hops to fit `width` (continuations indented two more)."""
    lines = [(lead if lead is not None else " " * indent)]
    plain_len = len(click.unstyle(lines[0]))
    for i, p in enumerate(parts):
        n = len(click.unstyle(p))
        if width is not None and i and plain_len + 1 + n > width and plain_len > indent + 2:
            lines.append(" " * (indent + 2) + p)
            plain_len = indent + 2 + n
        else:
            sep = "" if i == 0 or lines[-1].endswith(" ") or not lines[-1].strip() else " "
            lines[-1] += sep + p
            plain_len += len(sep) + n
    return lines


def chain_line(chain: dict, doc: dict | None = None, look: Look = PLAIN) -> str:
    """A chain as a few lines (live output): verdict and ladder, the sentence, what to check next."""
    v = chain["verdict"]
    head = f"chain {chain['id']}: {v['cause']}" + (f" at hop {v['hop']}" if v["hop"] is not None else "")
    if v["broken"]:
        head = look.bad("BROKEN") + " " + head
    names = _names(doc) if doc is not None else {}
    lines = [head]
    if doc is not None:
        by_id = {h["id"]: h for h in doc["handshakes"]}
        lines += _ladder_lines(ladder_parts(chain, by_id, names, look), 4, look.width)
    lines += look.wrap(term(v["summary"]), 4)
    if v.get("advice") and v["cause"] != "ok":
        lines += _next_lines(v["advice"], 4, look)
    lines += ["    " + line for line in dns_lines(v, names)]
    return "\n".join(line for line in lines if line.strip())


def _next_lines(advice: str, indent: int, look: Look) -> list[str]:
    lines = look.wrap(term(advice), indent + 6, first=" " * indent + "next: ")
    if lines and look.color:
        lines[0] = lines[0].replace("next:", look.s("next:", fg="cyan", bold=True), 1)
    return lines


def dns_lines(verdict: dict, names: dict[str, str]) -> list[str]:
    """The failed lookups a verdict cites, one line each: `DNS: NAME RCODE (frame N), ...`."""
    d = verdict.get("dns") or {}
    out = []
    host = d.get("host") or ""
    who = f"{names[host]} ({host})" if names.get(host) else host
    for lk in d.get("lookups") or []:
        if lk["outcome"] == "ok":
            continue
        what = (f"{lk['rcode']} (frame {lk['answer_frame']})" if lk["rcode"] is not None
                else f"no answer (query frame {lk['query_frame']})")
        out.append(f"DNS: {term(lk['name'] or '?')} {what}, {term(lk['type'] or '?')} lookup by {term(who)}")
    return out


ORDER = {"breaking": 0, "suspicious": 1, "expected": 3}


def diff_lines(d: dict, look: Look = PLAIN, verbose: bool = False, indent: int = 0) -> list[str]:
    """One hop-to-hop diff: breaking rows first; expected ones folded into a count unless verbose."""
    changes = sorted(d["changes"], key=lambda c: ORDER.get(c["class"], 2))
    if not changes:
        return [" " * indent + "(no differences)"]
    shown = changes if verbose else [c for c in changes if c["class"] != "expected"]
    folded = len(changes) - len(shown)
    cut = 0
    if not verbose and len(shown) > DIFF_ROWS:
        cut, shown = len(shown) - DIFF_ROWS, shown[:DIFF_ROWS]
    head = f"{d['direction']} diff, hop {d['from_hop']} → hop {d['to_hop']}: "
    by_class: dict[str, int] = {}
    for c in changes:
        by_class[c["class"]] = by_class.get(c["class"], 0) + 1
    head += ", ".join(f"{n} {k}" for k, n in by_class.items())
    if folded:
        head += " (expected ones: -v)"
    out = look.wrap(head, indent + 2, first=" " * indent)
    if shown:
        rows = [[c["class"], term(c["name"]), change_text(c)] for c in shown]
        hl, rl = fit_table(["class", "header", "change"], rows, look.width, shrink=(2, 1), indent=indent + 2,
                           wrap_last=True)
        out += [look.dim(hl[0]), hl[1]]
        for c, text in zip(shown, rl):
            style = ({"fg": "red", "bold": True} if c["class"] == "breaking" else
                     {"fg": "yellow"} if c["class"] != "expected" else {})
            out += [look.s(x, **style) for x in text.split("\n")]
    if cut:
        out.append(" " * (indent + 2) + f"… {cut} more (-v)")
    return out


def change_text(c: dict) -> str:
    """`before → after`, `+ added`, `− removed`, `Name → name` (case): one cell."""
    before, after = term(c["before"] or ""), term(c["after"] or "")
    if c["kind"] == "added":
        return f"+ {after}"
    if c["kind"] == "removed":
        return f"− {before}"
    if c["kind"] in ("changed", "case-changed"):
        return f"{before} → {after}"
    return f"{c['kind']}: {before} → {after}"


def diff_table(d: dict) -> str:
    """The whole diff as one table (every row): kept for callers of the old layout."""
    return "\n".join(diff_lines(d, verbose=True, indent=2))


def tls_lines(doc: dict, limit: int = 20, look: Look = PLAIN) -> list[str]:
    """Connections that carried TLS: what wscap could not read, and how to read it."""
    hidden = [t for t in doc.get("tls", []) if not t["decrypted"]]
    opened = [t for t in doc.get("tls", []) if t["decrypted"]]
    if not hidden and not opened:
        return []
    names = _names(doc)
    out = [""]
    if opened:
        out += look.wrap(f"TLS: {len(opened)} connection(s) decrypted with the key log; their upgrades "
                         "are above.", 2, first="")
    if hidden:
        keyed = any(s.get("keylog") for s in doc["source"])
        out += look.wrap(f"TLS: {len(hidden)} connection(s) carried TLS where HTTP was expected, so any upgrade "
                         "inside is invisible" + (" (the key log had no secrets for them):" if keyed else
                                                  "; pass --keylog FILE (SSLKEYLOGFILE) to decrypt:"), 2, first="")
        for t in hidden[:limit]:
            alpn = ",".join(t["alpn"]) or "none"
            out += look.wrap(f"{term(label(t['client'], names))} → {term(label(t['server'], names))}  "
                             f"SNI {term(t['sni'] or '(none)')}  ALPN {term(alpn)}  frame "
                             f"{t['hello_frame'] or t['first_frame']}"
                             + ("" if t["complete"] else "  (ClientHello cut short)"), 4, first="  ")
        if len(hidden) > limit:
            out.append(f"  … {len(hidden) - limit} more")
    return out


# Chains listed without -v when the capture has more ok ones (broken chains are always listed).
OK_CHAINS = 20


def chain_block(c: dict, by_id: Mapping[int, dict], names: dict[str, str], look: Look, verbose: bool,
                advised: dict[str, int] | None = None) -> list[str]:
    """One chain. `advised` (cause -> chain id) keeps the advice to its first chain per cause:
    later ones point back to it instead of repeating the paragraph."""
    v = c["verdict"]
    out: list[str] = []
    tag = f"  [{c['id']}] "
    if v["broken"]:
        head = tag + look.bad("BROKEN") + f" {v['cause']}" + (f" at hop {v['hop']}" if v["hop"] is not None else "")
        out.append(head)
        out += _ladder_lines(ladder_parts(c, by_id, names, look), 6, look.width)
    else:
        word = "ok" if v["cause"] == "ok" else f"ok ({v['cause']})"
        out += _ladder_lines(ladder_parts(c, by_id, names, look), 6, look.width,
                             lead=tag + look.good(word) + "  ")
    if v["cause"] != "ok" or verbose:
        out += look.wrap(term(v["summary"]), 6)
    if v.get("advice") and v["cause"] != "ok":
        first = advised.get(v["cause"]) if advised is not None else None
        if first is not None and first != c["id"]:
            out += _next_lines(f"as for chain {first} above.", 6, look)
        else:
            out += _next_lines(v["advice"], 6, look)
            if advised is not None:
                advised[v["cause"]] = c["id"]
    for line in dns_lines(v, names):
        out += look.wrap(line, 8, first=" " * 6)
    enc = c.get("encrypted_before")
    if enc:
        out += look.wrap(f"Before hop 0: {term(label(enc['client'], names))} → "
                         f"{term(label(enc['server'], names))} came over TLS (SNI {term(enc['sni'] or '(none)')}, "
                         f"frame {enc['hello_frame']}) and was not decrypted: the client-side leg is there, "
                         "encrypted (--keylog shows it).", 6)
    if v["broken"] and v["hop"] is not None:
        for d in c["diffs"]:
            if d["changes"] and (d["to_hop"] == v["hop"] or d["from_hop"] == v["hop"]) and (
                    verbose or any(ch["class"] != "expected" for ch in d["changes"])):
                out += diff_lines(d, look, verbose, indent=6)
    return out


def render_table(doc: dict, verbose: bool = False, look: Look = PLAIN) -> str:
    """The terminal view: sources, then the verdicts (broken chains first, each with what to
    check next), then the handshake table (its first rows without -v), then the summary."""
    out = []
    many = len(doc["source"]) > 5 and not verbose
    if many:
        # Many captures (-j over a directory): their count here, each one only when it has errors.
        out.append(f"{len(doc['source'])} captures, {sum(s['packets'] for s in doc['source'])} packets"
                   " (-v lists them)")
    for s in doc["source"]:
        if many and not s["errors"]:
            continue
        out.append(f"{term(s['path'])}: {s['packets']} packets ({s['format']})")
        for e in s["errors"]:
            out += [look.bad(x) for x in look.wrap(term(e), 4, first="  ! ")]
    by_id = handshake_index(doc)          # read on demand when the handshakes wait in the spool
    names = _names(doc)
    chains = doc.get("chains") or []
    if chains:
        broken: Sequence[dict[str, Any]]
        fine: Sequence[dict[str, Any]]
        if isinstance(chains, SpooledList):
            flags = [c["verdict"]["broken"] for c in chains]
            broken = chains.subset(i for i, b in enumerate(flags) if b)
            fine = chains.subset(i for i, b in enumerate(flags) if not b)
        else:
            broken = [c for c in chains if c["verdict"]["broken"]]
            fine = [c for c in chains if not c["verdict"]["broken"]]
        out.append("")
        causes: dict[str, int] = {}
        for c in broken:
            causes[c["verdict"]["cause"]] = causes.get(c["verdict"]["cause"], 0) + 1
        head = f"chains: {len(chains)}, {len(broken)} broken" + (
            ": " + ", ".join(f"{k} {n}" for k, n in causes.items()) if broken else "")
        head_lines = look.wrap(head, 2, first="")
        out += [look.head(x) for x in head_lines]
        advised: dict[str, int] = {}
        for c in broken:
            out += chain_block(c, by_id, names, look, verbose, advised)
        show = fine if verbose or len(fine) <= OK_CHAINS else fine[:OK_CHAINS]
        for c in show:
            out += chain_block(c, by_id, names, look, verbose, advised)
        if len(show) < len(fine):
            out.append(look.dim(f"  … {len(fine) - len(show)} more ok chain(s) (-v lists them)"))
    if doc["handshakes"]:
        out.append("")
        out += handshake_table(doc, look, None if verbose else TABLE_ROWS)
    else:
        st = doc.get("stats") or {}
        why = ""
        if st.get("unsupported_encapsulation"):
            why = " (" + ", ".join(f"{term(k)} {n}" for k, n in st["unsupported_encapsulation"].items()) + \
                  " packet(s) in encapsulations wscap does not read)"
        elif st.get("packets") and not st.get("tcp_packets"):
            why = " (no TCP packets in the capture)"
        out.append("")
        out += look.wrap("no HTTP upgrade handshakes found" + why, 2, first="")
    out += tls_lines(doc, look=look)
    eps = [e for e in doc.get("endpoints", []) if e["role"] != "unknown"]
    if eps and chains:
        out.append("")
        text = "endpoints: " + ", ".join(
            f"{term(e['name'] or e['ip'])} ({e['role']}"
            + (f", :{','.join(map(str, e['ports']))}" if e["ports"] else "") + ")" for e in eps[:12]) \
            + (f", … {len(eps) - 12} more" if len(eps) > 12 else "")
        out += look.wrap(text, 2, first="")
    if verbose:
        for h in doc["handshakes"]:
            out.append("")
            out += look.wrap(f"── handshake {h['id']}: {term(label(h['client'], names))} → "
                             f"{term(label(h['server'], names))}", 4, first="")
            if h.get("tunnel"):
                out += look.wrap("tunnel: " + tunnel_text(h["tunnel"]), 6, first="    ")
            for part in ("request", "response"):
                msg = h.get(part)
                if msg:
                    # Line by line: CRLF ends are implied, anything else (bare CR, ESC) stays visible.
                    for line in msg["raw"].split("\r\n"):
                        out += _hard_wrap(term(line).rstrip(), 4, look.width)
                    while out and not out[-1].strip():
                        out.pop()
            for a in h["anomalies"]:
                text = (f"{a['severity']:5} {a['code']}: {term(a['message'])}"
                        + (f" (frame {a['frame']})" if a["frame"] else ""))
                lines = look.wrap(text, 10, first="    ")
                out += [look.bad(x) for x in lines] if a["severity"] == "error" else lines
            for f in h["frames"]:
                extra = f" close={f['close_code']} {term(f['close_reason'] or '')}" if f["opcode"] == 8 else \
                    f" {term(f['preview'] or '')[:40]}"
                out += _hard_wrap(f"frame {f['frame']} {f['dir']:6} {f['opcode_name']:12} len={f['length']}"
                                  f"{' RSV1' if f['rsv1'] else ''}{' masked' if f['masked'] else ''}{extra}",
                                  4, look.width)
    s = doc["summary"]
    out.append("")
    text = (f"{s.get('handshakes', 0)} handshake(s), {s.get('upgraded', 0)} upgraded; {s.get('chains', 0)} chain(s), "
            f"{s.get('broken', 0)} broken" + (": " + ", ".join(f"{k} {v}" for k, v in (s.get("by_cause") or {}).items()
                                                              if k != "ok") if s.get("broken") else ""))
    out += look.wrap(text, 2, first="")
    return "\n".join(out)


def _hard_wrap(text: str, indent: int, width: int | None) -> list[str]:
    """A raw line cut into width-sized pieces (header values have no good break points)."""
    pad = " " * indent
    if width is None or len(text) + indent <= width:
        return [pad + text]
    step = max(width - indent - 2, 20)
    pieces = [text[i:i + step] for i in range(0, len(text), step)]
    return [pad + pieces[0]] + [pad + "  " + p for p in pieces[1:]]


def tunnel_text(layers: list[dict]) -> str:
    """`vxlan vni 42 192.0.2.1 → 192.0.2.2 / gre key 7 …`, outermost first."""
    parts = []
    for t in layers:
        ids = " ".join(f"{k} {v if not isinstance(v, list) else ','.join(map(str, v))}" for k, v in t.items()
                       if k not in ("type", "outer_src", "outer_dst", "direction") and v is not None and v is not False)
        ends = f" {t['outer_src']} → {t['outer_dst']}" if t.get("outer_src") else ""
        parts.append(term(f"{t['type']}" + (f" {ids}" if ids else "") + ends))
    seen = layers[0].get("direction") if layers else None
    return " / ".join(parts) + (" (as seen on the server's packets)" if seen == "s2c" else "")


def _indent(text: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line for line in text.splitlines())
