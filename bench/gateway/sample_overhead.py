"""Samples a proxy's self-reported overhead header while the load generator runs.

oha does not keep response headers, so this sends its own requests next to the load, open-loop at a
fixed rate (default 10/s, each on a thread of a pool, so a proxy that queues still yields samples),
and reads the header from each answer. Requests still out at the end get up to 30 s to finish.

    python sample_overhead.py URL KEY SECONDS OUT.json [HEADER] [RATE]

Writes {"header", "n", "failed", "p50", "p99", "values"} (milliseconds) to OUT.json.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor, wait

import httpx

MAX_IN_FLIGHT = 64
LATE_TIMEOUT = 30.0


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, round((len(s) - 1) * p))]


def main() -> None:
    url, key, seconds, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    header = sys.argv[5] if len(sys.argv) > 5 else "x-litellm-overhead-duration-ms"
    rate = float(sys.argv[6]) if len(sys.argv) > 6 else 10.0
    body = {"model": "gpt-4o-mini", "max_tokens": 12,
            "messages": [{"role": "user", "content": "Say hello in one short sentence."}]}
    limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT)
    with httpx.Client(timeout=LATE_TIMEOUT + seconds, limits=limits,
                      headers={"authorization": f"Bearer {key}"}) as client:
        def one() -> float | None:
            try:
                r = client.post(f"{url}/v1/chat/completions", json=body)
            except httpx.HTTPError:
                return None
            v = r.headers.get(header)
            return float(v) if r.status_code == 200 and v is not None else None

        futures = []
        deadline = time.monotonic() + seconds
        with ThreadPoolExecutor(MAX_IN_FLIGHT) as pool:
            next_at = time.monotonic()
            while time.monotonic() < deadline:
                futures.append(pool.submit(one))
                next_at += 1.0 / rate
                time.sleep(max(0.0, next_at - time.monotonic()))
            wait(futures, timeout=LATE_TIMEOUT)
            results = [f.result() if f.done() else None for f in futures]
    values = [v for v in results if v is not None]
    with open(out, "w") as f:
        json.dump({"header": header, "n": len(values), "failed": len(results) - len(values),
                   "p50": percentile(values, 0.5), "p99": percentile(values, 0.99), "values": values}, f)


if __name__ == "__main__":
    main()
