"""Load test of an OpenAI-compatible server (make bench-serve): CLIENTS concurrent clients work
through the first LIMIT problems of a JSONL dataset, one chat completion per problem, and report
requests per minute, p50/p95 latency and accuracy (the answer `usage.ponder.answer` reports, or
the last number of the reply, against the reference).

Usage: bench-serve.py BASE_URL MODEL DATASET [--limit 10] [--clients 8] [--api-key KEY]
                      [--ponder JSON]
"""

import argparse
import concurrent.futures
import json
import re
import statistics
import time

from openai import OpenAI

ap = argparse.ArgumentParser()
ap.add_argument("base")
ap.add_argument("model")
ap.add_argument("dataset")
ap.add_argument("--limit", type=int, default=10)
ap.add_argument("--clients", type=int, default=8)
ap.add_argument("--api-key", default="none")
ap.add_argument("--ponder", default=None, help="JSON sent as extra_body.ponder")
args = ap.parse_args()

problems = [json.loads(l) for l in open(args.dataset) if l.strip()][: args.limit]
client = OpenAI(base_url=args.base + "/v1", api_key=args.api_key, max_retries=0, timeout=3600)
extra = {"ponder": json.loads(args.ponder)} if args.ponder else None


def number(text):
    nums = re.findall(r"-?\d+(?:\.\d+)?", (text or "").replace(",", ""))
    return nums[-1] if nums else None


def solve(p):
    t = time.monotonic()
    r = client.chat.completions.create(
        model=args.model,
        messages=[{"role": "user", "content": p["question"]}],
        extra_body=extra,
    )
    latency = time.monotonic() - t
    ponder = (r.usage.model_extra or {}).get("ponder") or {}
    answer = ponder.get("answer") or number(r.choices[0].message.content)
    try:
        right = answer is not None and float(answer) == float(p["answer"])
    except ValueError:
        right = False
    return latency, right, r.usage.completion_tokens, r.usage.prompt_tokens


start = time.monotonic()
with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
    results = list(pool.map(solve, problems))
wall = time.monotonic() - start
lat = sorted(r[0] for r in results)
p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
report = {
    "model": args.model,
    "requests": len(results),
    "clients": args.clients,
    "wall_s": round(wall, 1),
    "requests_per_min": round(len(results) / wall * 60, 2),
    "p50_s": round(statistics.median(lat), 1),
    "p95_s": round(p95, 1),
    "accuracy": round(sum(r[1] for r in results) / len(results), 3),
    "completion_tokens": sum(r[2] for r in results),
    "prompt_tokens": sum(r[3] for r in results),
}
print(json.dumps(report))
