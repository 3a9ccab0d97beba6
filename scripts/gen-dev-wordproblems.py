#!/usr/bin/env python3
"""Writes data/dev-wordproblems.jsonl: simple arithmetic word problems (1-3 steps, whole-number
answers) written for ponder's development (tuning strategies, `ponder bench`).

Deterministic: fixed templates, a fixed seed, and every answer computed here from the numbers put
into the question (never typed by hand). Each template also checks its own preconditions (no
negative or fractional intermediate results), so every problem has one whole-number answer.

    python3 scripts/gen-dev-wordproblems.py            # rewrites the file
    python3 scripts/gen-dev-wordproblems.py --check    # exits 1 if the file differs
"""

import json
import random
import sys
from pathlib import Path

SEED = 20261201
PER_TEMPLATE = 3
OUT = Path(__file__).resolve().parent.parent / "data" / "dev-wordproblems.jsonl"

NAMES = ["Ava", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Iris", "Jonas",
         "Kira", "Liam", "Maya", "Noah", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara"]


# Each template: (steps, function(rng) -> (question, answer) or None to draw again).
def t_add(r):
    n, a, b = r.choice(NAMES), r.randint(5, 40), r.randint(3, 30)
    return f"{n} has {a} marbles and finds {b} more. How many marbles does {n} have now?", a + b


def t_sub(r):
    n, a = r.choice(NAMES), r.randint(20, 90)
    b = r.randint(3, a - 1)
    return f"A shelf held {a} books. {n} took {b} of them away. How many books are left on the shelf?", a - b


def t_mul(r):
    a, b = r.randint(3, 12), r.randint(4, 15)
    return f"There are {a} boxes with {b} pens in each box. How many pens are there in all?", a * b


def t_div(r):
    k, each = r.randint(3, 9), r.randint(4, 12)
    total = k * each
    n = r.choice(NAMES)
    return (f"{n} shares {total} stickers equally among {k} friends. How many stickers does each "
            f"friend get?"), total // k


def t_add_sub(r):
    n, a, b = r.choice(NAMES), r.randint(10, 50), r.randint(5, 30)
    c = r.randint(2, a + b - 1)
    return (f"{n} had {a} coins, earned {b} more, and then spent {c}. How many coins does {n} "
            f"have now?"), a + b - c


def t_mul_add(r):
    a, b, c = r.randint(3, 9), r.randint(4, 12), r.randint(2, 20)
    return (f"A baker fills {a} trays with {b} muffins each and has {c} muffins left over on the "
            f"counter. How many muffins did the baker make?"), a * b + c


def t_mul_sub(r):
    a, b = r.randint(4, 10), r.randint(5, 12)
    c = r.randint(1, a * b - 1)
    return (f"A class orders {a} packs of {b} crayons. {c} crayons break. How many crayons are "
            f"not broken?"), a * b - c


def t_price(r):
    n, q, p = r.choice(NAMES), r.randint(2, 9), r.randint(2, 15)
    paid = q * p + r.randint(1, 30)
    return (f"{n} buys {q} notebooks that cost {p} dollars each and pays with {paid} dollars. "
            f"How much change does {n} get, in dollars?"), paid - q * p


def t_two_items(r):
    a, pa, b, pb = r.randint(2, 8), r.randint(2, 9), r.randint(2, 8), r.randint(3, 12)
    return (f"A shop sells pencils for {pa} dollars each and rulers for {pb} dollars each. How "
            f"many dollars do {a} pencils and {b} rulers cost together?"), a * pa + b * pb


def t_div_add(r):
    g, each, extra = r.randint(3, 8), r.randint(3, 10), r.randint(2, 15)
    total = g * each
    return (f"{total} students are split into {g} equal teams. Then {extra} more students join "
            f"the first team. How many students are on the first team now?"), each + extra


def t_weekly(r):
    n, per_day, days = r.choice(NAMES), r.randint(3, 25), r.randint(3, 7)
    return (f"{n} reads {per_day} pages every day for {days} days. How many pages does {n} read "
            f"in total?"), per_day * days


def t_times_more(r):
    a, k = r.randint(3, 15), r.randint(2, 5)
    n, m = r.sample(NAMES, 2)
    return (f"{n} has {a} stamps. {m} has {k} times as many stamps as {n}. How many stamps do "
            f"they have together?"), a + k * a


def t_three_step(r):
    a, b, c, d = r.randint(2, 6), r.randint(5, 12), r.randint(3, 20), r.randint(2, 5)
    total = a * b + c
    if total % d:
        return None
    return (f"A farmer picks {a} baskets of {b} apples each, and {c} more apples from the ground. "
            f"He packs all the apples equally into {d} bags. How many apples are in each bag?"), total // d


def t_age(r):
    n, m = r.sample(NAMES, 2)
    a, diff, years = r.randint(6, 20), r.randint(2, 12), r.randint(2, 10)
    return (f"{n} is {a} years old. {m} is {diff} years older than {n}. How old will {m} be in "
            f"{years} years?"), a + diff + years


def t_remaining_after_two(r):
    total = r.randint(30, 100)
    a = r.randint(5, total // 2)
    b = r.randint(3, total - a - 1)
    return (f"A tank holds {total} liters of water. On Monday {a} liters are used and on Tuesday "
            f"{b} liters are used. How many liters are left?"), total - a - b


def t_legs(r):
    c, d = r.randint(2, 12), r.randint(2, 12)
    return (f"A farm has {c} chickens and {d} cows. How many legs do the animals have in "
            f"total?"), 2 * c + 4 * d


def t_rows_seats(r):
    rows, seats, empty = r.randint(4, 15), r.randint(6, 20), r.randint(1, 30)
    if empty >= rows * seats:
        return None
    return (f"A hall has {rows} rows of {seats} seats. {empty} seats are empty. How many seats "
            f"are taken?"), rows * seats - empty


def t_save(r):
    n, goal, per_week = r.choice(NAMES), r.randint(40, 200), r.randint(5, 20)
    if goal % per_week:
        return None
    return (f"{n} wants to save {goal} dollars and saves {per_week} dollars every week. How many "
            f"weeks will it take?"), goal // per_week


def t_minutes(r):
    h, m = r.randint(1, 4), r.randint(5, 55)
    return f"A movie lasts {h} hours and {m} minutes. How many minutes long is it?", 60 * h + m


def t_half(r):
    n, a, b = r.choice(NAMES), 2 * r.randint(6, 40), r.randint(2, 10)
    return (f"{n} had {a} cards and gave half of them to a friend. Then {n} bought {b} more. How "
            f"many cards does {n} have now?"), a // 2 + b


TEMPLATES = [t_add, t_sub, t_mul, t_div, t_add_sub, t_mul_add, t_mul_sub, t_price, t_two_items,
             t_div_add, t_weekly, t_times_more, t_three_step, t_age, t_remaining_after_two,
             t_legs, t_rows_seats, t_save, t_minutes, t_half]


def generate():
    r = random.Random(SEED)
    rows = []
    for template in TEMPLATES:
        made = 0
        while made < PER_TEMPLATE:
            got = template(r)
            if got is None:
                continue
            question, answer = got
            assert isinstance(answer, int) and answer >= 0, (template.__name__, question, answer)
            made += 1
            rows.append((template.__name__[2:], question, answer))
    r.shuffle(rows)
    return [
        {"id": f"dev-{i + 1:02d}", "question": q, "answer": str(a), "template": t}
        for i, (t, q, a) in enumerate(rows)
    ]


def main():
    text = "".join(json.dumps(row) + "\n" for row in generate())
    if "--check" in sys.argv[1:]:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} differs from what {Path(__file__).name} generates", file=sys.stderr)
            sys.exit(1)
        return
    OUT.write_text(text)
    print(f"wrote {text.count(chr(10))} problems to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
