"""optillm's `bon` approach in front of an OpenAI-compatible server (make bench-serve's
comparison): CLIENTS concurrent clients work through the first LIMIT problems of a JSONL dataset,
each problem answered by optillm's own `best_of_n_sampling` (optillm 0.4.0, unmodified: n samples
in one request, then one rating request per sample), and the same report as bench-serve.py.

optillm's package __init__ starts its Flask proxy, which imports torch, transformers, z3, the
Cerebras SDK and more (not installable here in reasonable time); its `bon` approach needs only the
`openai` client. So the approach module is imported on its own, without the package __init__,
and called in-process with a client pointed at the server: the requests the server sees are
exactly the ones optillm's proxy would send (the proxy's own local HTTP hop is left out, which
only favours optillm).

Usage: bench-optillm.py BASE_URL DATASET [--limit 10] [--clients 8] [--n 8] [--max-tokens 384]
"""

import argparse
import concurrent.futures
import importlib.util
import json
import re
import statistics
import sys
import threading
import time
import types

import httpx
from openai import OpenAI

ap = argparse.ArgumentParser()
ap.add_argument("base")
ap.add_argument("dataset")
ap.add_argument("--limit", type=int, default=10)
ap.add_argument("--clients", type=int, default=8)
ap.add_argument("--n", type=int, default=8)
ap.add_argument("--max-tokens", type=int, default=384)
args = ap.parse_args()

# Import optillm.bon (and the stdlib-only conversation_logger it uses) without optillm/__init__.
spec = importlib.util.find_spec("optillm")
if spec is None:
    sys.exit("bench-optillm: optillm is not installed (pip install --no-deps optillm==0.4.0)")
package = types.ModuleType("optillm")
package.__path__ = list(spec.submodule_search_locations)
sys.modules["optillm"] = package
from optillm.bon import best_of_n_sampling  # noqa: E402

requests = 0
prompt_tokens = 0
lock = threading.Lock()


def count(response):
    global requests
    if response.request.url.path.endswith("/chat/completions"):
        with lock:
            requests += 1


http = httpx.Client(timeout=3600, event_hooks={"response": [count]})
client = OpenAI(base_url=args.base + "/v1", api_key="none", max_retries=0, http_client=http)
model = client.models.list().data[0].id
problems = [json.loads(l) for l in open(args.dataset) if l.strip()][: args.limit]


def number(text):
    nums = re.findall(r"-?\d+(?:\.\d+)?", (text or "").replace(",", ""))
    return nums[-1] if nums else None


def solve(p):
    t = time.monotonic()
    text, tokens = best_of_n_sampling(
        "", p["question"], client, model, n=args.n, request_config={"max_tokens": args.max_tokens}
    )
    latency = time.monotonic() - t
    answer = number(text)
    try:
        right = answer is not None and float(answer) == float(p["answer"])
    except ValueError:
        right = False
    return latency, right, tokens


start = time.monotonic()
with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
    results = list(pool.map(solve, problems))
wall = time.monotonic() - start
lat = sorted(r[0] for r in results)
p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
print(
    json.dumps(
        {
            "model": f"optillm bon (n={args.n})",
            "requests": len(results),
            "clients": args.clients,
            "wall_s": round(wall, 1),
            "requests_per_min": round(len(results) / wall * 60, 2),
            "p50_s": round(statistics.median(lat), 1),
            "p95_s": round(p95, 1),
            "accuracy": round(sum(r[1] for r in results) / len(results), 3),
            "completion_tokens": sum(r[2] for r in results),
            "server_requests": requests,
        }
    )
)
