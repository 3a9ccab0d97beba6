"""Drives a running `ponder serve` with the `openai` Python package (tests/serve.rs runs it).

Usage: serve_client.py BASE_URL API_KEY MODEL. Exits non-zero on the first failed check; prints
one JSON line with what it saw.
"""

import concurrent.futures
import json
import sys

import openai
from openai import OpenAI

base, key, model = sys.argv[1:4]
client = OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=600)
Q = "What is 2+3?"
report = {}


def ask(name, **kw):
    return client.chat.completions.create(
        model=name, messages=[{"role": "user", "content": Q}], **kw
    )


def ponder_usage(r):
    u = r.usage.model_extra.get("ponder")
    assert isinstance(u, dict), f"usage has no ponder counters: {r.usage}"
    return u


# /v1/models lists the served model and every alias.
ids = [m.id for m in client.models.list().data]
assert model in ids and f"bon-{model}" in ids and f"mcts-{model}" in ids, ids
report["models"] = len(ids)

# Plain chat.
r = ask(model, max_tokens=16, temperature=0, seed=1)
assert len(r.choices) == 1 and r.choices[0].message.content.strip(), r
assert r.choices[0].finish_reason in ("stop", "length"), r
assert r.usage.completion_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
assert ponder_usage(r)["strategy"] == "best_of_n"

# n = 4: four choices from one prefill (the same prefill as n = 1; the branches share it).
one = ask(model, max_tokens=8, seed=3)
four = ask(model, max_tokens=8, n=4, seed=3)
assert len(four.choices) == 4 and [c.index for c in four.choices] == [0, 1, 2, 3], four
u1, u4 = ponder_usage(one), ponder_usage(four)
assert u4["prefill_tokens"] == u1["prefill_tokens"] == u4["prompt_tokens"], (u1, u4)
assert u4["generated_tokens"] > u1["generated_tokens"], (u1, u4)
assert u4["reused_tokens"] > 0, u4
report["n4"] = {"prefill_n1": u1["prefill_tokens"], "prefill_n4": u4["prefill_tokens"],
                "generated_n4": u4["generated_tokens"], "reused_n4": u4["reused_tokens"]}

# Every strategy alias, with tiny budgets merged in through extra_body.
tiny_bon = {"n": 2, "max_tokens": 12}
tree_step = {"max_tokens": 12, "max_depth": 2}
aliases = {
    "bon-": ("best_of_n", tiny_bon),
    "best-of-n-": ("best_of_n", tiny_bon),
    "majority-": ("best_of_n", tiny_bon),
    "self-consistency-": ("best_of_n", tiny_bon),
    "mcts-": ("mcts", {"k": 2, "budget": {"iterations": 1, "tokens": 64}, "step": tree_step}),
    "beam-": ("beam", {"width": 2, "expansions": 1, "budget": {"iterations": 1, "tokens": 64}, "step": tree_step}),
    "self-correct-": ("self_correct", {"max_tokens": 12}),
    "deepening-": ("deepening", {"width": 2, "l0": 8, "total_budget": 24}),
    "deepconf-": ("deepconf", {"n": 2, "warmup": 2, "batch": 1, "max_tokens": 12}),
}
report["aliases"] = {}
for prefix, (strategy, tiny) in aliases.items():
    r = ask(prefix + model, extra_body={"ponder": tiny})
    u = ponder_usage(r)
    assert u["strategy"] == strategy, (prefix, u)
    assert len(r.choices) == 1 and r.model == prefix + model, r
    reasoning = r.choices[0].message.model_extra.get("reasoning_content") or ""
    assert "[chosen]" in reasoning, (prefix, reasoning)
    report["aliases"][prefix] = {"generated": u["generated_tokens"], "candidates": u["candidates"]}

# A whole config through extra_body on a plain model name.
r = ask(model, extra_body={"ponder": {"type": "best_of_n", "n": 3, "max_tokens": 10, "rerank": "logprob"}})
u = ponder_usage(r)
assert u["strategy"] == "best_of_n" and u["candidates"] == 3, u

# Streaming: reasoning deltas first, then content, then the end of the stream ([DONE]).
kinds = []
reasoning, content, finish = "", "", None
for chunk in ask("bon-" + model, stream=True, extra_body={"ponder": tiny_bon}):
    if not chunk.choices:
        continue
    d = chunk.choices[0].delta
    rc = (d.model_extra or {}).get("reasoning_content")
    if rc:
        kinds.append("r")
        reasoning += rc
    if d.content:
        kinds.append("c")
        content += d.content
    if chunk.choices[0].finish_reason:
        finish = chunk.choices[0].finish_reason
assert "r" in kinds and "c" in kinds and kinds.index("c") > max(i for i, k in enumerate(kinds) if k == "r"), kinds
assert "[candidate 1]" in reasoning and "[chosen]" in reasoning and content.strip(), (reasoning, content)
assert finish in ("stop", "length"), finish
report["stream"] = {"reasoning_deltas": kinds.count("r"), "content_deltas": kinds.count("c")}

# 8 concurrent clients.
def one_client(i):
    r = ask(model, max_tokens=8, seed=100 + i)
    return r.id, r.choices[0].message.content

with concurrent.futures.ThreadPoolExecutor(8) as pool:
    results = list(pool.map(one_client, range(8)))
assert len({i for i, _ in results}) == 8 and all(c for _, c in results), results
report["concurrent"] = len(results)

# Errors reach the client as OpenAI's typed exceptions.
try:
    OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0).models.list()
    raise AssertionError("a wrong key was accepted")
except openai.AuthenticationError as e:
    assert e.status_code == 401 and e.body["code"] == "invalid_api_key", e.body
try:
    ask(model, extra_body={"ponder": {"type": "magic"}})
    raise AssertionError("an unknown strategy was accepted")
except openai.BadRequestError as e:
    assert e.status_code == 400 and e.body["param"] == "ponder.type", e.body

report["ok"] = True
print(json.dumps(report))
