#!/usr/bin/env python3
"""Summarise `cargo bench -p saga-tests --bench overhead` as Markdown tables.

Reads criterion's estimates under target/criterion (or the directory given as
the first argument) and prints, per group, the median time per run of each
variant and N, the time per step, and the ratios engine/static and
engine/dynamic, all from the one run that produced the files.
"""

import json
import os
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join("target", "criterion")
SIZES = [1, 10, 100, 10000]
GROUPS = ["success-ready", "success-pending", "failure-ready", "failure-pending"]
ENGINE = [
    "engine",
    "engine-build+run",
    "engine-typed",
    "engine-typed-ref",
    "engine-user-step",
]
BUILD = ["static", "dynamic", "engine", "engine-typed", "engine-user-step"]


def median_ns(group, variant, size):
    path = os.path.join(ROOT, group, variant, str(size), "new", "estimates.json")
    try:
        with open(path) as f:
            return json.load(f)["median"]["point_estimate"]
    except FileNotFoundError:
        return None


def fmt_time(ns):
    if ns is None:
        return "-"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


def ratio(a, b):
    return "-" if a is None or b is None else f"{a / b:.2f}"


def run_tables():
    for group in GROUPS:
        print(f"### {group}\n")
        header = ["N", "static", "dynamic"] + ENGINE
        header += ["engine / static", "engine / dynamic", "user-step / static"]
        print("| " + " | ".join(header) + " |")
        print("|" + " ---: |" * len(header))
        for size in SIZES:
            static = median_ns(group, "static", size)
            dynamic = median_ns(group, "dynamic", size)
            engines = [median_ns(group, v, size) for v in ENGINE]
            cells = [str(size), fmt_time(static), fmt_time(dynamic)]
            cells += [fmt_time(t) for t in engines]
            cells += [
                ratio(engines[0], static),
                ratio(engines[0], dynamic),
                ratio(engines[-1], static),
            ]
            print("| " + " | ".join(cells) + " |")
        print()
        print("Per step (median / N):\n")
        header = ["N", "static", "dynamic", "engine", "engine-typed", "engine-user-step"]
        print("| " + " | ".join(header) + " |")
        print("|" + " ---: |" * len(header))
        for size in SIZES:
            cells = [str(size)]
            for variant in header[1:]:
                t = median_ns(group, variant, size)
                cells.append("-" if t is None else f"{t / size:.2f} ns")
            print("| " + " | ".join(cells) + " |")
        print()


def build_table():
    print("### build (median; the result is dropped outside the measurement)\n")
    header = ["N"] + BUILD + ["engine per step"]
    print("| " + " | ".join(header) + " |")
    print("|" + " ---: |" * len(header))
    for size in SIZES:
        times = [median_ns("build", v, size) for v in BUILD]
        engine = times[2]
        per_step = "-" if engine is None else f"{engine / size:.1f} ns"
        print("| " + " | ".join([str(size)] + [fmt_time(t) for t in times] + [per_step]) + " |")
    print()


if __name__ == "__main__":
    run_tables()
    build_table()
