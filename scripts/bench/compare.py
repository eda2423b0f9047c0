#!/usr/bin/env python3
"""Compare wscap's JSON document (contract v1) against the generator's ground truth.

    python3 scripts/bench/compare.py TRUTH.json WSCAP.json

A ground-truth chain matches when one wscap chain has exactly its legs
(hops' `client`/`server`, client side first) and the same `verdict.cause` and
`verdict.hop`.  Everything else is listed by kind with concrete examples.
"""
from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict


def leg_key(h: dict) -> tuple[str, str]:
    return (h.get("client"), h.get("server"))


def compare(truth: dict, doc: dict) -> dict:
    hs = {h["id"]: h for h in doc.get("handshakes", [])}
    by_leg: dict[tuple, list[int]] = defaultdict(list)
    for h in hs.values():
        by_leg[leg_key(h)].append(h["id"])
    chain_of: dict[int, list[dict]] = defaultdict(list)   # handshake id -> wscap chains holding it
    for c in doc.get("chains", []):
        for hid in c.get("hops", []):
            chain_of[hid].append(c)

    def legs_of(c: dict) -> list[tuple]:
        return [leg_key(hs[h]) if h in hs else ("?", f"handshake {h} not in document") for h in c.get("hops", [])]

    kinds: dict[str, list[dict]] = defaultdict(list)
    matched = 0
    seen_chains: set[int] = set()
    confusion: Counter = Counter()
    for t in truth["chains"]:
        want = [(lg["client"], lg["server"]) for lg in t["legs"]]
        cands = []
        missing = [lg for lg in want if lg not in by_leg]
        for lg in want:
            for hid in by_leg.get(lg, []):
                for c in chain_of.get(hid, []):
                    if c not in cands:
                        cands.append(c)
        for c in cands:
            seen_chains.add(c["id"])
        exact = [c for c in cands if legs_of(c) == want]
        ex = {"truth": {k: t[k] for k in ("id", "legs", "cause", "hop", "variant", "topology")}}
        if missing:
            ex["missing_handshakes"] = [f"{a} -> {b}" for a, b in missing]
            ex["wscap_chains"] = [_brief(c, legs_of(c)) for c in cands]
            kinds["handshake-missing"].append(ex)
            confusion[(t["cause"], "<missing>")] += 1
            continue
        if not exact:
            ex["wscap_chains"] = [_brief(c, legs_of(c)) for c in cands]
            kinds["chain-shape" if cands else "no-chain"].append(ex)
            confusion[(t["cause"], "<shape>" if cands else "<no chain>")] += 1
            continue
        c = exact[0]
        v = c.get("verdict") or {}
        confusion[(t["cause"], v.get("cause"))] += 1
        ex["wscap"] = _brief(c, legs_of(c))
        if v.get("cause") != t["cause"]:
            kinds["wrong-cause"].append(ex)
        elif v.get("hop") != t["hop"]:
            kinds["wrong-hop"].append(ex)
        else:
            matched += 1
    gt_legs = {(lg["client"], lg["server"]) for t in truth["chains"] for lg in t["legs"]}
    extra = []
    for c in doc.get("chains", []):
        if c["id"] in seen_chains:
            continue
        legs = legs_of(c)
        if any(lg in gt_legs for lg in legs):
            continue
        extra.append(_brief(c, legs))
    if extra:
        kinds["extra-chain"] = [{"wscap": e} for e in extra]
    by_cause_truth = Counter(t["cause"] for t in truth["chains"])
    by_cause_wscap = Counter((c.get("verdict") or {}).get("cause") for c in doc.get("chains", []))
    return {
        "truth_chains": len(truth["chains"]),
        "wscap_chains": len(doc.get("chains", [])),
        "matched": matched,
        "ok": matched == len(truth["chains"]) and not extra,
        "kinds": {k: v for k, v in kinds.items()},
        "counts": {k: len(v) for k, v in kinds.items()},
        "by_cause_truth": dict(by_cause_truth),
        "by_cause_wscap": {str(k): v for k, v in by_cause_wscap.items()},
        "confusion": {f"{a} -> {b}": n for (a, b), n in sorted(confusion.items(), key=lambda x: (x[0][0], str(x[0][1])))},
    }


def _brief(c: dict, legs: list[tuple]) -> dict:
    v = c.get("verdict") or {}
    return {"id": c.get("id"), "legs": [f"{a} -> {b}" for a, b in legs], "cause": v.get("cause"),
            "hop": v.get("hop"), "summary": v.get("summary"), "links": c.get("links")}


def report(r: dict, examples: int = 2) -> str:
    lines = [f"ground truth chains: {r['truth_chains']}, wscap chains: {r['wscap_chains']}, "
             f"exact matches (legs + cause + hop): {r['matched']}"]
    causes = sorted(set(r["by_cause_truth"]) | {k for k in r["by_cause_wscap"] if k != "None"})
    lines.append("| cause | truth | wscap (all chains) |")
    lines.append("|---|---:|---:|")
    for k in causes:
        lines.append(f"| {k} | {r['by_cause_truth'].get(k, 0)} | {r['by_cause_wscap'].get(k, 0)} |")
    if r["by_cause_wscap"].get("None"):
        lines.append(f"| (no verdict) | 0 | {r['by_cause_wscap']['None']} |")
    off = {k: n for k, n in r["confusion"].items() if k.split(" -> ")[0] != k.split(" -> ")[1]}
    if off:
        lines.append("")
        lines.append("confusion (truth -> wscap), mismatches only: " + ", ".join(f"{k}: {n}" for k, n in off.items()))
    for kind, exs in r["kinds"].items():
        lines.append("")
        lines.append(f"**{kind}**: {len(exs)}")
        for ex in exs[:examples]:
            lines.append("```json")
            lines.append(json.dumps(ex, indent=None, sort_keys=False)[:1500])
            lines.append("```")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = argv if argv is not None else sys.argv[1:]
    with open(argv[0]) as f:
        truth = json.load(f)
    with open(argv[1]) as f:
        doc = json.load(f)
    r = compare(truth, doc)
    print(report(r, examples=int(argv[2]) if len(argv) > 2 else 3))
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
