"""Prints bench/gateway.sh's table from the cells' oha JSON files.

    python3 summarize.py WORK_DIR

A cell is WORK_DIR/L{latency}_R{rate}_{target}.json (oha --output-format json), with
..._{target}.cpu (CPU seconds the proxy used during the measured window) and, for LiteLLM,
..._litellm.hdr.json (its x-litellm-overhead-duration-ms samples, sample_overhead.py).
Overhead = the proxy's latency percentile minus the direct percentile at the same rate and upstream
latency (percentiles of two runs, not per-request differences).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

TARGETS = ("direct", "tally", "litellm")
NAMES = {"direct": "direct", "tally": "Tally", "litellm": "LiteLLM"}


def load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f}"


def cell(work: Path, lat: int, rate: int, target: str) -> dict | None:
    d = load(work / f"L{lat}_R{rate}_{target}.json")
    if d is None:
        return None
    pct = d.get("latencyPercentiles") or {}
    codes = d.get("statusCodeDistribution") or {}
    errors = d.get("errorDistribution") or {}
    ok = int(codes.get("200", 0))
    total = d["summary"].get("total") or 0
    cpu = None
    try:
        cpu = float((work / f"L{lat}_R{rate}_{target}.cpu").read_text())
    except (OSError, ValueError):
        pass
    return {
        "p50": pct.get("p50"), "p99": pct.get("p99"), "rps": (ok / total) if total else 0.0, "ok": ok,
        "non200": sum(int(v) for k, v in codes.items() if k != "200"),
        "aborted": sum(int(v) for k, v in errors.items() if "deadline" in k),
        "errors": sum(int(v) for k, v in errors.items() if "deadline" not in k), "cpu": cpu,
    }


def main() -> None:
    work = Path(sys.argv[1])
    cells = sorted({(int(m.group(1)), int(m.group(2))) for p in work.glob("L*_R*_direct.json")
                    if (m := re.match(r"L(\d+)_R(\d+)_direct\.json", p.name))})
    rows = []
    header = ["upstream", "rate/s", "direct p50/p99 ms",
              "Tally overhead p50/p99 ms", "Tally ok/s", "Tally CPU ms/req",
              "LiteLLM overhead p50/p99 ms", "LiteLLM ok/s", "LiteLLM CPU ms/req",
              "LiteLLM self-reported p50/p99 ms"]
    notes = []
    for lat, rate in cells:
        d = cell(work, lat, rate, "direct")
        row = [f"{lat} ms", str(rate), f"{ms(d['p50'])} / {ms(d['p99'])}" if d else "-"]
        for target in ("tally", "litellm"):
            c = cell(work, lat, rate, target)
            if c is None or d is None or c["p50"] is None:
                row += ["not run", "-", "-"]
                continue
            over = f"{ms(c['p50'] - d['p50'])} / {ms(c['p99'] - d['p99'])}"
            if c["rps"] < 0.95 * rate:
                over += " (saturated)"
                notes.append(f"{NAMES[target]} at {rate}/s, upstream {lat} ms: only {c['rps']:.0f} answers/s "
                             f"(the rest queued or were cut at the deadline), so its latency is queueing time.")
            if c["non200"] or c["errors"]:
                notes.append(f"{NAMES[target]} at {rate}/s, upstream {lat} ms: {c['non200']} non-200 answers, "
                             f"{c['errors']} failed requests.")
            if c["aborted"] > 0.1 * max(c["ok"], 1):
                notes.append(f"{NAMES[target]} at {rate}/s, upstream {lat} ms: {c['aborted']} requests still "
                             f"waiting at the end of the run were cut (not in the percentiles).")
            cpu = "-" if c["cpu"] is None or not c["ok"] else f"{c['cpu'] * 1000 / c['ok']:.2f}"
            row += [over, f"{c['rps']:.0f}", cpu]
        h = load(work / f"L{lat}_R{rate}_litellm.hdr.json")
        row.append(f"{h['p50']:.2f} / {h['p99']:.2f} (n={h['n']})" if h and h.get("n") else "-")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |"  # noqa: E731
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))
    for n in notes:
        print(f"note: {n}")


if __name__ == "__main__":
    main()
