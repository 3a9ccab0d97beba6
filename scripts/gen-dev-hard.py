#!/usr/bin/env python3
"""Writes data/dev-hard.jsonl: harder arithmetic word problems (3-5 steps, whole-number answers)
written for ponder's development, in the manner of grade-school benchmarks but not taken from any.

Each problem mixes + - x / and most carry a distractor: a number in the text that the question
does not need (an age, a count, the price of something not bought). Some use percentages or
fractions that come out whole, unit rates, "how many more", money in dollars, time in minutes.

Deterministic: fixed templates, a fixed seed, and every answer computed here from the numbers put
into the question (never typed by hand). Every arithmetic step goes through `Calc`, which rejects a
draw whose intermediate would be negative or fractional and counts the steps; each template also
recomputes its answer by a second route with exact fractions, and the two must agree.

    python3 scripts/gen-dev-hard.py            # rewrites the file
    python3 scripts/gen-dev-hard.py --check    # exits 1 if the file differs
"""

import json
import random
import re
import sys
from fractions import Fraction
from math import gcd
from pathlib import Path

SEED = 20261215
PER_TEMPLATE = 2
MIN_STEPS, MAX_STEPS = 3, 5
MAX_ANSWER = 5000
OUT = Path(__file__).resolve().parent.parent / "data" / "dev-hard.jsonl"

NAMES = ["Ava", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Iris", "Jonas",
         "Kira", "Liam", "Maya", "Noah", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara",
         "Uma", "Victor", "Wen", "Yusuf", "Zoe", "Lucia", "Mateo", "Nadia", "Oskar", "Ines"]


class Redraw(Exception):
    """The drawn numbers would give a negative or fractional intermediate; draw again."""


class Calc:
    """Whole-number arithmetic that counts its steps and refuses results outside the naturals."""

    def __init__(self):
        self.steps = 0

    def _step(self, value):
        self.steps += 1
        return value

    def add(self, a, b):
        return self._step(a + b)

    def sub(self, a, b):
        if b > a:
            raise Redraw
        return self._step(a - b)

    def mul(self, a, b):
        return self._step(a * b)

    def div(self, a, b):
        if b == 0 or a % b:
            raise Redraw
        return self._step(a // b)


def whole(x):
    """An exact Fraction that must be a non-negative whole number, as an int."""
    x = Fraction(x)
    assert x.denominator == 1 and x >= 0, x
    return int(x)


def times_word(k):
    return {2: "twice", 3: "three times", 4: "four times"}[k]


# Each template: function(rng) -> dict(question, answer, check, steps, distractors).
# `answer` comes from Calc, `check` from an independent formula; `distractors` are numbers in the
# question that the solution never uses. A template raises Redraw to draw again.
def t_bakery_bags(r):
    c = Calc()
    n = r.choice(NAMES)
    item = r.choice(["rolls", "bagels", "muffins", "scones"])
    trays, per, bag = r.randint(4, 9), r.randint(8, 16), r.choice([4, 5, 6, 8])
    baked = c.mul(trays, per)
    if baked // bag < 5:
        raise Redraw
    bags_total = r.randint(3, baked // bag - 2)
    sold = baked - bag * bags_total
    opened, price = r.randint(3, 25), r.randint(2, 5)
    give = r.randint(1, bags_total - 1)
    left = c.sub(baked, sold)
    bags = c.div(left, bag)
    answer = c.sub(bags, give)
    q = (f"{n}'s bakery, which opened {opened} years ago, bakes {trays} trays of {item} every "
         f"morning with {per} {item} on each tray. By noon {sold} {item} have been sold for "
         f"{price} dollars each. The rest are packed into bags of {bag}, and {give} of those bags "
         f"are given to a food bank. How many bags are left to sell?")
    check = whole(Fraction(trays * per - sold, bag) - give)
    return dict(question=q, answer=answer, check=check, steps=c.steps, distractors=[opened, price])


def t_sale_percent(r):
    c = Calc()
    n = r.choice(NAMES)
    pct = r.choice([10, 15, 20, 25, 30, 40, 50])
    unit = 100 // gcd(pct, 100)
    full = unit * r.randint(max(1, 30 // unit), 160 // unit)
    pairs, sock, boots = r.randint(2, 5), r.randint(3, 8), r.randint(45, 120)
    off = c.div(c.mul(full, pct), 100)
    jacket = c.sub(full, off)
    answer = c.add(jacket, c.mul(pairs, sock))
    q = (f"A sports shop has {pct}% off all jackets this weekend. {n} buys a jacket whose regular "
         f"price is {full} dollars, and {pairs} pairs of socks at {sock} dollars a pair, which are "
         f"not on sale. A pair of hiking boots costs {boots} dollars, but {n} does not buy them. "
         f"How many dollars does {n} pay in total?")
    check = whole(full * Fraction(100 - pct, 100) + pairs * sock)
    return dict(question=q, answer=answer, check=check, steps=c.steps, distractors=[boots])


def t_fuel_cost(r):
    c = Calc()
    n = r.choice(NAMES)
    hours, speed, kpl = r.randint(2, 4), r.choice([60, 70, 80, 90, 100]), r.choice([10, 12, 15, 20])
    extra = r.randint(10, 40)
    extra += -(hours * speed + extra) % kpl
    cost, age, seats = r.randint(2, 3), r.randint(2, 12), r.choice([5, 7])
    km = c.add(c.mul(speed, hours), extra)
    liters = c.div(km, kpl)
    answer = c.mul(liters, cost)
    q = (f"{n} drives for {hours} hours on the highway at {speed} km per hour, then another "
         f"{extra} km through town. {n}'s car is {age} years old, has {seats} seats, and uses one "
         f"liter of fuel for every {kpl} km. Fuel costs {cost} dollars per liter. How many "
         f"dollars does the fuel for the whole drive cost?")
    check = whole(Fraction(hours * speed + extra, kpl) * cost)
    return dict(question=q, answer=answer, check=check, steps=c.steps, distractors=[age, seats])


def t_fraction_commute(r):
    c = Calc()
    a, b = r.choice([(1, 3), (2, 3), (1, 4), (3, 4), (2, 5), (3, 5)])
    k = r.choice([2, 3, 4])
    total = b * k * r.randint(6, 20)
    teachers = r.randint(12, 40)
    school = r.choice(["Hillside School", "Riverside School", "Oak Park School"])
    bus = c.mul(c.div(total, b), a)
    rest = c.sub(total, bus)
    bikes = c.div(rest, k)
    answer = c.sub(rest, bikes)
    share = "half" if k == 2 else f"1/{k}"
    q = (f"{school} has {total} students and {teachers} teachers. {a}/{b} of the students come "
         f"to school by bus. Of the students who do not take the bus, {share} ride bikes and the "
         f"rest walk. How many students walk to school?")
    check = whole(total * (1 - Fraction(a, b)) * (1 - Fraction(1, k)))
    return dict(question=q, answer=answer, check=check, steps=c.steps, distractors=[teachers])


def t_compare_more(r):
    c = Calc()
    n, m = r.sample(NAMES, 2)
    thing = r.choice(["shells", "pine cones", "smooth stones"])
    sat, k, km = r.randint(8, 30), r.choice([2, 3, 4]), r.randint(2, 9)
    got = c.add(sat, c.mul(sat, k))
    gift = r.randint(2, 9)
    now = c.sub(got, gift)
    other = r.randint(5, now - 1)
    answer = c.sub(now, other)
    if r.random() < 0.5:
        ask = f"How many more {thing} does {n} have than {m} now?"
    else:
        ask = f"How many fewer {thing} does {m} have than {n} now?"
    q = (f"{n} collected {sat} {thing} on Saturday and {times_word(k)} as many on Sunday at a beach "
         f"{km} km from home. Then {n} gave {gift} of them to a cousin. {m} collected {other} "
         f"{thing} over the same weekend. {ask}")
    check = whole(sat * (1 + k) - gift - other)
    return dict(question=q, answer=answer, check=check, steps=c.steps, distractors=[km])


def t_mowing_pay(r):
    c = Calc()
    n = r.choice(NAMES)
    rate, lawns, hours = r.randint(12, 25), r.randint(3, 8), r.randint(2, 3)
    fuel, tip, age = r.randint(10, 30), r.randint(5, 20), r.randint(3, 15)
    earned = c.mul(c.mul(lawns, hours), rate)
    answer = c.add(c.sub(earned, fuel), tip)
    q = (f"{n} mows lawns for {rate} dollars an hour. This week {n} mowed {lawns} lawns, each "
         f"taking {hours} hours, and one neighbor added a {tip}-dollar tip. Fuel for the "
         f"{age}-year-old mower cost {fuel} dollars for the week. How many dollars did {n} make "
         f"this week after paying for fuel?")
    check = whole(rate * hours * lawns + tip - fuel)
    return dict(question=q, answer=answer, check=check, steps=c.steps, distractors=[age])


def t_practice_hours(r):
    c = Calc()
    n = r.choice(NAMES)
    instrument = r.choice(["piano", "violin", "guitar", "flute"])
    day, weekend, lesson = 15 * r.randint(2, 4), 15 * r.randint(3, 8), 15 * r.randint(2, 4)
    songs = r.randint(20, 90)
    weekdays = c.mul(day, 5)
    sat_sun = c.mul(weekend, 2)
    minutes = c.add(c.add(weekdays, sat_sun), lesson)
    answer = c.div(minutes, 60)
    q = (f"{n} practices the {instrument} for {day} minutes on each of the 5 weekdays and for "
         f"{weekend} minutes on Saturday and again on Sunday. On top of that, {n} has one "
         f"{lesson}-minute lesson every week. {n}'s music book has {songs} songs in it. How many "
         f"hours does {n} spend playing the {instrument} in a week?")
    check = whole(Fraction(5 * day + 2 * weekend + lesson, 60))
    return dict(question=q, answer=answer, check=check, steps=c.steps, distractors=[songs])


def t_shop_change(r):
    c = Calc()
    n = r.choice(NAMES)
    (one, many1), (two, many2), (other, _) = r.sample(
        [("notebook", "notebooks"), ("pen", "pens"), ("folder", "folders"),
         ("glue stick", "glue sticks"), ("sketchbook", "sketchbooks"), ("calculator", "calculators")],
        3)
    a, p, b, q2 = r.randint(2, 6), r.randint(2, 9), r.randint(2, 6), r.randint(3, 12)
    bill, unbought = r.choice([50, 100]), r.randint(8, 30)
    spent = c.add(c.mul(a, p), c.mul(b, q2))
    answer = c.sub(bill, spent)
    q = (f"{n} pays with a {bill}-dollar bill for {a} {many1} at {p} dollars each and {b} {many2} "
         f"at {q2} dollars each. A {other} in the same shop costs {unbought} dollars, but {n} "
         f"decides not to get one. How many dollars of change does {n} get?")
    check = whole(bill - (a * p + b * q2))
    return dict(question=q, answer=answer, check=check, steps=c.steps, distractors=[unbought])


def t_fill_time(r):
    c = Calc()
    n = r.choice(NAMES)
    h1, h2 = r.randint(5, 15), r.randint(5, 15)
    minutes = r.randint(8, 30)
    start = r.randint(20, 200)
    fish = r.randint(3, 12)
    cap = start + (h1 + h2) * minutes
    missing = c.sub(cap, start)
    flow = c.add(h1, h2)
    answer = c.div(missing, flow)
    q = (f"A garden pond holds {cap} liters of water and has {fish} goldfish in it. After a dry "
         f"spell only {start} liters are left. {n} refills it with two hoses running at the same "
         f"time: one gives {h1} liters a minute and the other {h2} liters a minute. How many "
         f"minutes does it take to fill the pond?")
    check = whole(Fraction(cap - start, h1 + h2))
    return dict(question=q, answer=answer, check=check, steps=c.steps, distractors=[fish])


def t_recipe_flour(r):
    c = Calc()
    n = r.choice(NAMES)
    serves, per_person = r.choice([2, 3, 4]), r.randint(3, 8) * 10
    flour = serves * per_person
    people = serves * r.randint(2, 4) + r.randint(0, serves - 1)
    cook, dust = r.randint(10, 25), r.choice([10, 20, 25, 30])
    bag = r.choice([1000, 1500, 2000])
    each = c.div(flour, serves)
    batter = c.mul(each, people)
    answer = c.sub(bag, c.add(batter, dust))
    q = (f"A pancake recipe for {serves} people uses {flour} grams of flour and takes {cook} "
         f"minutes to cook. {n} is making pancakes for {people} people, using the same amount of "
         f"flour per person, and sprinkles another {dust} grams on the counter for rolling. {n} "
         f"started with a {bag}-gram bag of flour. How many grams of flour are left in the bag?")
    check = whole(bag - Fraction(flour * people, serves) - dust)
    return dict(question=q, answer=answer, check=check, steps=c.steps, distractors=[cook])


def t_library_percent(r):
    c = Calc()
    pct = r.choice([20, 25, 30, 40, 60, 75])
    shelves = r.randint(3, 9)
    base = 100 // gcd(pct, 100)
    total = base * shelves * r.randint(max(1, 60 // (base * shelves)), max(2, 600 // (base * shelves)))
    days, staff = r.randint(5, 7), r.randint(2, 9)
    place = r.choice(["The town library", "A school library", "The village library"])
    novels = c.div(c.mul(total, pct), 100)
    rest = c.sub(total, novels)
    answer = c.div(rest, shelves)
    q = (f"{place} has {total} books and is open {days} days a week with {staff} people working "
         f"there. {pct}% of the books are novels. The other books are split equally among "
         f"{shelves} shelves. How many books are on each of those shelves?")
    check = whole(total * Fraction(100 - pct, 100) / shelves)
    return dict(question=q, answer=answer, check=check, steps=c.steps, distractors=[days, staff])


def t_save_weeks(r):
    c = Calc()
    n, sib = r.choice(NAMES), r.choice(["brother", "sister"])
    thing, case = r.choice([("tablet", "cover"), ("bike", "helmet"), ("camera", "bag"),
                            ("keyboard", "stand")])
    price, extra = r.randint(60, 250), r.randint(10, 40)
    per_week, weeks = r.randint(5, 20), r.randint(3, 12)
    saved = price + extra - per_week * weeks
    if saved < 5:
        raise Redraw
    other = r.randint(10, 150)
    need = c.sub(c.add(price, extra), saved)
    answer = c.div(need, per_week)
    q = (f"{n} wants a {thing} that costs {price} dollars and a {case} for it that costs {extra} "
         f"dollars. {n} has {saved} dollars saved already and puts away {per_week} dollars every "
         f"week. {n}'s {sib} has {other} dollars saved. How many weeks will it take {n} to have "
         f"exactly enough for both?")
    check = whole(Fraction(price + extra - saved, per_week))
    return dict(question=q, answer=answer, check=check, steps=c.steps, distractors=[other])


def t_quiz_points(r):
    c = Calc()
    us, them = r.sample(["Owls", "Foxes", "Comets", "Otters", "Rockets", "Badgers"], 2)
    pc, pb = r.choice([3, 4, 5]), r.choice([8, 10, 12])
    right, bonus, wrong = r.randint(8, 20), r.randint(2, 4), r.randint(2, 6)
    teams = r.randint(5, 12)
    scored = c.sub(c.add(c.mul(right, pc), c.mul(bonus, pb)), wrong)
    theirs = r.randint(20, scored - 5)
    answer = c.sub(scored, theirs)
    q = (f"In a quiz night with {teams} teams, each correct answer earns {pc} points, each bonus "
         f"question earns {pb} points, and each wrong answer takes away 1 point. The {us} got "
         f"{right} correct answers, {bonus} bonus questions and {wrong} wrong answers. The {them} "
         f"finished with {theirs} points. How many more points did the {us} score than the "
         f"{them}?")
    check = whole(pc * right + pb * bonus - wrong - theirs)
    return dict(question=q, answer=answer, check=check, steps=c.steps, distractors=[teams])


def t_bus_stops(r):
    c = Calc()
    route = r.randint(11, 99)
    start = r.randint(20, 45)
    off1, on1, on2 = r.randint(3, 12), r.randint(2, 15), r.randint(1, 9)
    after1 = c.add(c.sub(start, off1), on1)
    half = c.div(after1, 2)
    answer = c.add(half, on2)
    q = (f"The number {route} bus leaves the depot with {start} passengers. At the first stop "
         f"{off1} people get off and {on1} get on. At the second stop half of the passengers get "
         f"off and {on2} get on. How many passengers are on the bus now?")
    check = whole(Fraction(start - off1 + on1, 2) + on2)
    return dict(question=q, answer=answer, check=check, steps=c.steps, distractors=[route])


def t_fence_cost(r):
    c = Calc()
    n = r.choice(NAMES)
    length, width = r.randint(6, 25), r.randint(4, 15)
    gate, price, plants = r.randint(1, 3), r.randint(3, 9), r.randint(6, 30)
    around = c.mul(c.add(length, width), 2)
    answer = c.mul(c.sub(around, gate), price)
    q = (f"{n}'s vegetable garden is a rectangle {length} meters long and {width} meters wide, "
         f"with {plants} tomato plants in it. {n} puts a fence all the way around the garden "
         f"except for a gate {gate} meter{'s' if gate > 1 else ''} wide. The fence costs {price} dollars per meter. How "
         f"many dollars does the fence cost?")
    check = whole((2 * length + 2 * width - gate) * price)
    return dict(question=q, answer=answer, check=check, steps=c.steps, distractors=[plants])


def t_unit_price_saving(r):
    c = Calc()
    n = r.choice(NAMES)
    item = r.choice(["juice boxes", "batteries", "pencils", "paper cups"])
    n1, n2 = r.sample([4, 6, 8, 10, 12], 2)
    p1, p2 = r.randint(3, 12), r.randint(3, 12)
    step = n1 * n2 // gcd(n1, n2)
    need = step * r.randint(1, max(1, 60 // step))
    farther = r.randint(2, 8)
    cost1 = c.mul(c.div(need, n1), p1)
    cost2 = c.mul(c.div(need, n2), p2)
    if cost1 == cost2:
        raise Redraw
    answer = c.sub(max(cost1, cost2), min(cost1, cost2))
    q = (f"Corner Market sells {item} in packs of {n1} for {p1} dollars a pack. Big Save, which is "
         f"{farther} km farther from {n}'s house, sells packs of {n2} for {p2} dollars a pack. "
         f"{n} needs exactly {need} {item} and buys only whole packs. How many dollars does {n} "
         f"save by buying them all at the cheaper shop instead of the other one?")
    check = whole(abs(need * (Fraction(p1, n1) - Fraction(p2, n2))))
    return dict(question=q, answer=answer, check=check, steps=c.steps, distractors=[farther])


def t_cycle_minutes(r):
    c = Calc()
    n = r.choice(NAMES)
    speed = r.choice([10, 12, 15, 18, 20])
    d1, d2 = r.randint(3, 15), r.randint(3, 15)
    rest, kg = 5 * r.randint(2, 8), r.randint(8, 14)
    km = c.add(d1, d2)
    ride = c.div(c.mul(km, 60), speed)
    answer = c.add(ride, rest)
    q = (f"{n} cycles {d1} km to the lake at {speed} km per hour, stops there for {rest} minutes, "
         f"and then cycles {d2} km on to a friend's house at the same speed. {n}'s bike weighs "
         f"{kg} kg. How many minutes does the whole trip take, including the stop?")
    check = whole(Fraction(d1, speed) * 60 + Fraction(d2, speed) * 60 + rest)
    return dict(question=q, answer=answer, check=check, steps=c.steps, distractors=[kg])


def t_gym_plans(r):
    c = Calc()
    n = r.choice(NAMES)
    fee, m1, m2 = r.choice([30, 40, 50, 60, 75]), r.randint(15, 35), r.randint(20, 45)
    months, machines = r.randint(3, 12), r.randint(10, 40)
    cost_a = c.add(fee, c.mul(m1, months))
    cost_b = c.mul(m2, months)
    if abs(cost_a - cost_b) < 10:
        raise Redraw
    dear, cheap = ("FitHub", "IronWorks") if cost_a > cost_b else ("IronWorks", "FitHub")
    answer = c.sub(max(cost_a, cost_b), min(cost_a, cost_b))
    q = (f"{n} is choosing between two gyms. FitHub charges a {fee}-dollar joining fee plus {m1} "
         f"dollars a month. IronWorks has {machines} machines, no joining fee, and charges {m2} "
         f"dollars a month. If {n} joins for {months} months, how many dollars more would "
         f"{dear} cost than {cheap}?")
    check = whole(abs(fee + (m1 - m2) * months))
    return dict(question=q, answer=answer, check=check, steps=c.steps, distractors=[machines])


def t_average_sales(r):
    c = Calc()
    shop, items = r.choice([("flower stall", "bunches of tulips"), ("bike shop", "helmets"),
                            ("book stall", "comics"), ("ice cream van", "cones")])
    a, b, d = r.randint(10, 60), r.randint(10, 60), r.randint(10, 60)
    e = r.randint(10, 60)
    e += -(a + b + d + e) % 4
    staff = r.randint(2, 6)
    answer = c.div(c.add(c.add(c.add(a, b), d), e), 4)
    article = "An" if shop[0] in "aeiou" else "A"
    q = (f"{article} {shop} with {staff} workers sold {a} {items} on Monday, {b} on Tuesday, {d} on "
         f"Wednesday and {e} on Thursday. On average, how many {items} did it sell per day over "
         f"those four days?")
    check = whole(Fraction(a, 4) + Fraction(b, 4) + Fraction(d, 4) + Fraction(e, 4))
    return dict(question=q, answer=answer, check=check, steps=c.steps, distractors=[staff])


def t_museum_visit(r):
    c = Calc()
    adults, kids = r.randint(2, 4), r.randint(2, 5)
    adult, child = r.randint(12, 25), r.randint(5, 11)
    parking, coupon = r.randint(5, 15), r.choice([5, 10, 15])
    year = r.randint(1890, 1990)
    tickets = c.add(c.mul(adults, adult), c.mul(kids, child))
    answer = c.add(c.sub(tickets, coupon), parking)
    q = (f"A family of {adults} adults and {kids} children visits a museum that opened in {year}. "
         f"Tickets cost {adult} dollars for each adult and {child} dollars for each child, and "
         f"parking costs {parking} dollars. The family has a coupon that takes {coupon} dollars "
         f"off the ticket total. How many dollars does the visit cost altogether?")
    check = whole(adults * adult + kids * child + parking - coupon)
    return dict(question=q, answer=answer, check=check, steps=c.steps, distractors=[year])


TEMPLATES = [t_bakery_bags, t_sale_percent, t_fuel_cost, t_fraction_commute, t_compare_more,
             t_mowing_pay, t_practice_hours, t_shop_change, t_fill_time, t_recipe_flour,
             t_library_percent, t_save_weeks, t_quiz_points, t_bus_stops, t_fence_cost,
             t_unit_price_saving, t_cycle_minutes, t_gym_plans, t_average_sales, t_museum_visit]


def occurrences(number, text):
    return len(re.findall(rf"(?<![\d.]){number}(?![\d])", text))


def verify(name, p):
    """Checks one generated problem; a failure here is a bug in the template, not a bad draw."""
    q, answer = p["question"], p["answer"]
    assert isinstance(answer, int) and 0 <= answer <= MAX_ANSWER, (name, q, answer)
    assert answer == p["check"], (name, q, answer, p["check"])
    assert MIN_STEPS <= p["steps"] <= MAX_STEPS, (name, q, p["steps"])
    assert p["distractors"], (name, "no distractor")
    for d in p["distractors"]:
        assert occurrences(d, q) == 1, (name, q, "distractor missing or repeated", d)


def generate():
    r = random.Random(SEED)
    rows = []
    for template in TEMPLATES:
        name = template.__name__[2:]
        made, seen = 0, set()
        while made < PER_TEMPLATE:
            try:
                p = template(r)
            except Redraw:
                continue
            if p["question"] in seen:
                continue
            # A distractor that equals a number the solution uses would not distract.
            if any(occurrences(d, p["question"]) > 1 for d in p["distractors"]):
                continue
            verify(name, p)
            seen.add(p["question"])
            made += 1
            rows.append((name, p["question"], p["answer"], p["steps"]))
    r.shuffle(rows)
    return [
        {"id": f"hard-{i + 1:02d}", "question": q, "answer": str(a), "template": t, "steps": s}
        for i, (t, q, a, s) in enumerate(rows)
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
