"""Terminal rendering (tabulate): handshake table, chain ladders, diff tables.

Pure functions of the JSON document. Every value that came from the network
goes through `term()` first, so ANSI escapes and control characters in header
values cannot drive the analyst's terminal.
"""
from __future__ import annotations

from tabulate import tabulate

from .escape import term

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
    ip, _, port = ep.rpartition(":")
    name = names.get(ip.strip("[]"))
    return f"{name}:{port}" if name else ep


def handshake_rows(doc: dict) -> list[list[str]]:
    names = _names(doc)
    rows = []
    for h in doc["handshakes"]:
        req = h.get("request") or {}
        errs = [a["code"] for a in h["anomalies"] if a["severity"] == "error"]
        warns = [a["code"] for a in h["anomalies"] if a["severity"] != "error"]
        rows.append([
            h["id"], term(label(h["client"], names)), term(label(h["server"], names)),
            term(req.get("target", "—"))[:48] + (" (h2)" if h.get("http_version") == "2" else ""),
            h["status"] if h["status"] is not None else "—",
            h["outcome"], h["first_frame"],
            ", ".join(dict.fromkeys(errs + warns))[:70] or "—",
        ])
    return rows


def handshake_line(h: dict, names: dict[str, str] | None = None) -> str:
    """One line per decided handshake (live output)."""
    names = names or {}
    req = h.get("request") or {}
    errs = [a["code"] for a in h["anomalies"] if a["severity"] == "error"]
    return (f"#{h['id']} {term(label(h['client'], names))} → {term(label(h['server'], names))} "
            f"{term(req.get('method', ''))} {term(req.get('target', ''))[:60]} → "
            f"{h['status'] if h['status'] is not None else h['outcome']} [{h['outcome']}]"
            + (f" ! {', '.join(dict.fromkeys(errs))}" if errs else ""))


def ladder(chain: dict, by_id: dict[int, dict], names: dict[str, str]) -> str:
    hops = [by_id[i] for i in chain["hops"] if i in by_id]
    if not hops:
        return ""
    parts = [term(label(hops[0]["client"], names))]
    for i, h in enumerate(hops):
        mark = " ✗" if chain["verdict"]["hop"] == i else ""
        st = h["status"] if h["status"] is not None else h["outcome"]
        parts.append(f"─[{st}{mark}]→ {term(label(h['server'], names))}")
    return " ".join(parts)


def chain_line(chain: dict, doc: dict | None = None) -> str:
    v = chain["verdict"]
    text = f"chain {chain['id']}: {v['cause']}" + (f" at hop {v['hop']}" if v["hop"] is not None else "")
    names = _names(doc) if doc is not None else {}
    if doc is not None:
        by_id = {h["id"]: h for h in doc["handshakes"]}
        text += "  " + ladder(chain, by_id, names)
    return text + "\n    " + term(v["summary"]) + "".join("\n    " + line for line in dns_lines(v, names))


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


def diff_table(d: dict) -> str:
    rows = [[c["class"], c["kind"], term(c["name"]), term(c["before"] or "")[:50], term(c["after"] or "")[:50]]
            for c in d["changes"]]
    if not rows:
        return "    (no differences)"
    head = f"  {d['direction']} diff, hop {d['from_hop']} → hop {d['to_hop']}"
    return head + "\n" + tabulate(rows, headers=["class", "change", "header", "before", "after"], tablefmt="simple")


def tls_lines(doc: dict, limit: int = 20) -> list[str]:
    """Connections that carried TLS: what wscap could not read, and how to read it."""
    hidden = [t for t in doc.get("tls", []) if not t["decrypted"]]
    opened = [t for t in doc.get("tls", []) if t["decrypted"]]
    if not hidden and not opened:
        return []
    names = _names(doc)
    out = [""]
    if opened:
        out.append(f"TLS: {len(opened)} connection(s) decrypted with the key log; their upgrades are above.")
    if hidden:
        keyed = any(s.get("keylog") for s in doc["source"])
        out.append(f"TLS: {len(hidden)} connection(s) carried TLS where HTTP was expected, so any upgrade "
                   "inside is invisible" + (" (the key log had no secrets for them):" if keyed else
                                             "; pass --keylog FILE (SSLKEYLOGFILE) to decrypt:"))
        for t in hidden[:limit]:
            alpn = ",".join(t["alpn"]) or "none"
            out.append(f"  {term(label(t['client'], names))} → {term(label(t['server'], names))}  "
                       f"SNI {term(t['sni'] or '(none)')}  ALPN {term(alpn)}  frame {t['hello_frame'] or t['first_frame']}"
                       + ("" if t["complete"] else "  (ClientHello cut short)"))
        if len(hidden) > limit:
            out.append(f"  … {len(hidden) - limit} more")
    return out


def render_table(doc: dict, verbose: bool = False) -> str:
    out = []
    for s in doc["source"]:
        line = f"{term(s['path'])}: {s['packets']} packets ({s['format']})"
        out.append(line)
        for e in s["errors"]:
            out.append("  ! " + term(e))
    if doc["handshakes"]:
        out.append("")
        out.append(tabulate(handshake_rows(doc), headers=["id", "client", "server", "target", "status",
                                                          "outcome", "frame", "anomalies"], tablefmt="simple"))
    else:
        st = doc.get("stats") or {}
        why = ""
        if st.get("unsupported_encapsulation"):
            why = " (" + ", ".join(f"{term(k)} {n}" for k, n in st["unsupported_encapsulation"].items()) + \
                  " packet(s) in encapsulations wscap does not read)"
        elif st.get("packets") and not st.get("tcp_packets"):
            why = " (no TCP packets in the capture)"
        out.append("\nno HTTP upgrade handshakes found" + why)
    out += tls_lines(doc)
    by_id = {h["id"]: h for h in doc["handshakes"]}
    names = _names(doc)
    eps = [e for e in doc.get("endpoints", []) if e["role"] != "unknown"]
    if eps and doc.get("chains"):
        out.append("")
        out.append("endpoints: " + ", ".join(
            f"{term(e['name'] or e['ip'])} ({e['role']}"
            + (f", :{','.join(map(str, e['ports']))}" if e["ports"] else "") + ")" for e in eps[:12])
            + (f", … {len(eps) - 12} more" if len(eps) > 12 else ""))
    if doc.get("chains"):
        out.append("")
        out.append("chains:")
        for c in doc["chains"]:
            v = c["verdict"]
            status = "BROKEN" if v["broken"] else "ok"
            out.append(f"  [{c['id']}] {status:6} {v['cause']}"
                       + (f" (hop {v['hop']})" if v["hop"] is not None else "") + "  " + ladder(c, by_id, names))
            out.append("         " + term(v["summary"]))
            out += ["         " + line for line in dns_lines(v, names)]
            enc = c.get("encrypted_before")
            if enc:
                out.append(f"         Before hop 0: {term(label(enc['client'], names))} → "
                           f"{term(label(enc['server'], names))} came over TLS (SNI {term(enc['sni'] or '(none)')}, "
                           f"frame {enc['hello_frame']}) and was not decrypted: the client-side leg is there, "
                           "encrypted (--keylog shows it).")
            if v["broken"] and v["hop"] is not None:
                for d in c["diffs"]:
                    if d["changes"] and (d["to_hop"] == v["hop"] or d["from_hop"] == v["hop"]) and (
                            verbose or any(ch["class"] != "expected" for ch in d["changes"])):
                        out.append(_indent(diff_table(d), 9))
    if verbose:
        for h in doc["handshakes"]:
            out.append("")
            out.append(f"── handshake {h['id']}: {term(label(h['client'], names))} → {term(label(h['server'], names))}")
            if h.get("tunnel"):
                out.append("    tunnel: " + tunnel_text(h["tunnel"]))
            for part in ("request", "response"):
                msg = h.get(part)
                if msg:
                    # Line by line: CRLF ends are implied, anything else (bare CR, ESC) stays visible.
                    lines = msg["raw"].split("\r\n")
                    out.append(_indent("\n".join(term(line) for line in lines).rstrip(), 4))
            for a in h["anomalies"]:
                out.append(f"    {a['severity']:5} {a['code']}: {term(a['message'])}"
                           + (f" (frame {a['frame']})" if a["frame"] else ""))
            for f in h["frames"]:
                extra = f" close={f['close_code']} {term(f['close_reason'] or '')}" if f["opcode"] == 8 else \
                    f" {term(f['preview'] or '')[:40]}"
                out.append(f"    frame {f['frame']} {f['dir']:6} {f['opcode_name']:12} len={f['length']}"
                           f"{' RSV1' if f['rsv1'] else ''}{' masked' if f['masked'] else ''}{extra}")
    s = doc["summary"]
    out.append("")
    out.append(f"{s['handshakes']} handshake(s), {s['upgraded']} upgraded; {s['chains']} chain(s), {s['broken']} broken"
               + (": " + ", ".join(f"{k} {v}" for k, v in s["by_cause"].items() if k != "ok") if s["broken"] else ""))
    return "\n".join(out)


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
