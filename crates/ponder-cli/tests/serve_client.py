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
assert ponder_usage(r)["strategy"] == "plain"

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
    assert "done · answer" in reasoning, (prefix, reasoning)
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
assert "candidate #1 · " in reasoning and "done · answer" in reasoning and content.strip(), (reasoning, content)
assert finish in ("stop", "length"), finish
report["stream"] = {"reasoning_deltas": kinds.count("r"), "content_deltas": kinds.count("c")}

# Chat logprobs: greedy, so each token is the most likely one at its position.
r = ask(model, max_tokens=8, temperature=0, logprobs=True, top_logprobs=3)
content = r.choices[0].logprobs.content
assert content and "".join(t.token for t in content) == r.choices[0].message.content, r
for t in content:
    assert t.logprob <= 0 and bytes(t.bytes) == t.token.encode() and len(t.top_logprobs) == 3, t
    assert t.top_logprobs[0].token == t.token and abs(t.top_logprobs[0].logprob - t.logprob) < 1e-5, t
    assert [a.logprob for a in t.top_logprobs] == sorted((a.logprob for a in t.top_logprobs), reverse=True), t
r = ask(model, max_tokens=6, n=3, seed=5, logprobs=True)
assert len(r.choices) == 3 and all(c.logprobs.content and c.logprobs.content[0].top_logprobs == [] for c in r.choices), r
# Recording logprobs does not change what is sampled.
plain3 = ask(model, max_tokens=6, n=3, seed=5)
assert [c.message.content for c in plain3.choices] == [c.message.content for c in r.choices], (plain3, r)
r = ask(model, max_tokens=6, temperature=0)
assert r.choices[0].logprobs is None, r
streamed = [c.choices[0].logprobs for c in ask(model, max_tokens=6, temperature=0, logprobs=True, top_logprobs=1, stream=True)
            if c.choices and c.choices[0].logprobs and c.choices[0].logprobs.content]
assert len(streamed) == 1 and streamed[0].content[0].top_logprobs, streamed
report["chat_logprobs"] = len(content)

# Text completions: a raw prompt, no chat template.
P = "The capital of France is"
r = client.completions.create(model=model, prompt=P, max_tokens=8, temperature=0, seed=1)
assert r.object == "text_completion" and len(r.choices) == 1 and r.choices[0].text, r
assert r.choices[0].logprobs is None and r.choices[0].finish_reason in ("stop", "length"), r
assert r.usage.completion_tokens > 0 and ponder_usage(r)["strategy"] == "plain", r
greedy = r.choices[0].text
# Two prompts, two completions each, prompt by prompt; best_of samples more and returns n.
r = client.completions.create(model=model, prompt=[P, "1, 2, 3,"], n=2, max_tokens=4, seed=2)
assert [c.index for c in r.choices] == [0, 1, 2, 3], r
r = client.completions.create(model=model, prompt=P, n=2, best_of=4, max_tokens=4, seed=2)
assert len(r.choices) == 2 and ponder_usage(r)["candidates"] == 4, r
# logprobs: the legacy parallel lists; greedy tokens are the most likely ones.
r = client.completions.create(model=model, prompt=P, max_tokens=8, temperature=0, logprobs=2)
lp = r.choices[0].logprobs
assert r.choices[0].text == greedy and "".join(lp.tokens) == greedy, (r, greedy)
assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset), lp
for tok, l, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
    assert len(top) <= 2 and max(top, key=top.get) == tok and abs(top[tok] - l) < 1e-5, (tok, l, top)
assert lp.text_offset == sorted(lp.text_offset) and lp.text_offset[0] == 0, lp
sampled = lp
# echo: the prompt first, its tokens scored in one forced pass; max_tokens 0 scores only.
r = client.completions.create(model=model, prompt=P + greedy, max_tokens=0, echo=True, logprobs=1)
lp = r.choices[0].logprobs
assert r.choices[0].text == P + greedy and "".join(lp.tokens) == P + greedy, r
assert all(l is None or l <= 0 for l in lp.token_logprobs) and lp.token_logprobs[-1] is not None, lp
# Scoring the greedy text gives the log-probabilities it was sampled with.
tail = len(sampled.tokens)
assert lp.tokens[-tail:] == sampled.tokens, (lp.tokens, sampled.tokens)
for a, b in zip(lp.token_logprobs[-tail:], sampled.token_logprobs):
    assert abs(a - b) < 0.05, (lp.token_logprobs[-tail:], sampled.token_logprobs)
r = client.completions.create(model=model, prompt=P, max_tokens=4, temperature=0, echo=True)
assert r.choices[0].text.startswith(P) and r.choices[0].logprobs is None, r
report["echo_tokens"] = len(lp.tokens)
# Streaming, plain and a search (its progress as reasoning_content).
text, finish = "", None
for chunk in client.completions.create(model=model, prompt=P, max_tokens=8, temperature=0, stream=True):
    for c in chunk.choices:
        text += c.text
        finish = c.finish_reason or finish
assert text == greedy and finish in ("stop", "length"), (text, greedy, finish)
reasoning, text = "", ""
for chunk in client.completions.create(model="bon-" + model, prompt="What is 2+3?", stream=True, extra_body={"ponder": tiny_bon}):
    for c in chunk.choices:
        reasoning += (c.model_extra or {}).get("reasoning_content") or ""
        text += c.text
assert "done · answer" in reasoning and text.strip(), (reasoning, text)
r = client.completions.create(model="mcts-" + model, prompt="What is 2+3?",
                              extra_body={"ponder": aliases["mcts-"][1]})
assert ponder_usage(r)["strategy"] == "mcts" and len(r.choices) == 1, r

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

# OpenAI's ranges and types, and the fields ponder cannot honour, refused naming the field.
def refused(param, call, **kw):
    try:
        call(**kw)
        raise AssertionError(f"{kw} was accepted")
    except openai.BadRequestError as e:
        assert e.status_code == 400 and e.body["param"] == param, (kw, e.body)
        return e.body

chat = lambda **kw: ask(model, max_tokens=4, **kw)
complete = lambda **kw: client.completions.create(model=model, prompt=P, max_tokens=4, **kw)
refused("temperature", chat, temperature=50)
refused("temperature", complete, temperature=2.5)
refused("top_p", chat, top_p=1.5)
refused("n", chat, n=0)
refused("stop", chat, stop=["a", "b", "c", "d", "e"])
refused("presence_penalty", chat, presence_penalty=3)
body = refused("frequency_penalty", complete, frequency_penalty=0.5)
assert body["code"] == "unsupported_parameter", body
refused("top_logprobs", chat, logprobs=True, top_logprobs=21)
refused("logprobs", complete, logprobs=21)
body = refused("tools", chat, tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}])
assert "tools" in body["message"], body
refused("response_format", chat, response_format={"type": "json_object"})
refused("logit_bias", complete, logit_bias={"50256": -100})
refused("suffix", complete, suffix="!")
refused("logprobs", lambda **kw: ask("bon-" + model, **kw), logprobs=True)
# Unknown fields and ones ponder ignores are accepted.
r = chat(user="u", extra_body={"a_field_from_the_future": 1}, presence_penalty=0, tools=[])
assert r.choices[0].message.content is not None, r

report["ok"] = True
print(json.dumps(report))
