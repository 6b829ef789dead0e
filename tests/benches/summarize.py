#!/usr/bin/env python3
"""Summarise `cargo bench -p saga-tests --bench overhead` as Markdown tables.

Reads criterion's estimates and prints, per group, the median time per run of
each variant and N, the ratios between variants (engine / static,
engine / dynamic, user-step / static, and engine-observer, engine-timeout and
engine-concurrent-undo against engine), the ratios against the floor
variants (floor-dyn-step, floor-dyn-step-observer, floor-user-step: the
least any engine storing `dyn Step` and a boxed observer can do; floor /
static, engine / floor, engine-observer / floor-dyn-step-observer,
floor-dyn-step-observer / floor-dyn-step, ...), the time per step, and the
build table, all from the one run that produced the files. A variant or ratio with
no estimate anywhere in a group (a filtered run, or engine-concurrent-undo on
the success groups) is left out.

    summarize.py [DIR ...] [--baseline NAME ...]

DIR is a criterion directory (default: `$CARGO_TARGET_DIR/criterion` when
that variable is set, else `target/criterion`). NAME is the criterion
baseline to read under each benchmark: `new` by default, each benchmark's
latest estimate (after filtered runs, it can mix runs); a run with
`-- --save-baseline NAME` also keeps its estimates under NAME, which keeps
one run's results together. Two
directories, or two baselines, summarise two runs (with and without
`saga-core/tracing`, say): each run's tables, then the second run's medians
over the first's. For example:

    cargo bench -p saga-tests --bench overhead -- --save-baseline plain
    cargo bench -p saga-tests --bench overhead --features saga-core/tracing \\
        -- --save-baseline tracing
    python3 tests/benches/summarize.py --baseline plain --baseline tracing
"""

import argparse
import json
import os
import sys

SIZES = [1, 10, 100, 10000]
GROUPS = ["success-ready", "success-pending", "failure-ready", "failure-pending"]
ENGINE = [
    "engine",
    "engine-build+run",
    "engine-typed",
    "engine-typed-ref",
    "engine-user-step",
    "engine-observer",
    "engine-timeout",
    "engine-concurrent-undo",
]
FLOOR = ["floor-dyn-step", "floor-dyn-step-observer", "floor-user-step"]
VARIANTS = ["static", "dynamic"] + ENGINE + FLOOR
# (column title, numerator, denominator)
RATIOS = [
    ("engine / static", "engine", "static"),
    ("engine / dynamic", "engine", "dynamic"),
    ("user-step / static", "engine-user-step", "static"),
    ("observer / engine", "engine-observer", "engine"),
    ("timeout / engine", "engine-timeout", "engine"),
    ("concurrent-undo / engine", "engine-concurrent-undo", "engine"),
]
# The floor under an engine over `dyn Step` (and a boxed observer), and how
# far the engine is above it: (column title, numerator, denominator).
FLOOR_RATIOS = [
    ("floor / static", "floor-dyn-step", "static"),
    ("floor / dynamic", "floor-dyn-step", "dynamic"),
    ("floor-user-step / static", "floor-user-step", "static"),
    ("floor-observer / static", "floor-dyn-step-observer", "static"),
    ("floor-observer / floor", "floor-dyn-step-observer", "floor-dyn-step"),
    ("engine / floor", "engine", "floor-dyn-step"),
    ("user-step / floor-user-step", "engine-user-step", "floor-user-step"),
    ("observer / floor-observer", "engine-observer", "floor-dyn-step-observer"),
]
PER_STEP = [
    "static",
    "dynamic",
    "engine",
    "engine-typed",
    "engine-user-step",
    "engine-observer",
] + FLOOR
BUILD = ["static", "dynamic", "engine", "engine-typed", "engine-user-step"]


class Run:
    """One benchmark run: a criterion directory and a baseline name in it."""

    def __init__(self, root, baseline):
        self.root = root
        self.baseline = baseline

    def label(self):
        return f"`{self.root}`, baseline `{self.baseline}`"

    def median_ns(self, group, variant, size):
        path = os.path.join(
            self.root, group, variant, str(size), self.baseline, "estimates.json"
        )
        try:
            with open(path) as f:
                return json.load(f)["median"]["point_estimate"]
        except FileNotFoundError:
            return None

    def any_estimate(self):
        return any(
            self.median_ns(group, variant, size) is not None
            for group in GROUPS + ["build"]
            for variant in VARIANTS
            for size in SIZES
        )


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


def table(header, rows):
    print("| " + " | ".join(header) + " |")
    print("|" + " ---: |" * len(header))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")
    print()


def ratio_table(title, candidates, times):
    """Prints the ratios of `candidates` with both sides measured somewhere."""
    ratios = [
        (column, a, b)
        for column, a, b in candidates
        if any(
            times[(a, size)] is not None and times[(b, size)] is not None
            for size in SIZES
        )
    ]
    if not ratios:
        return
    print(f"{title}\n")
    table(
        ["N"] + [column for column, _, _ in ratios],
        [
            [str(size)]
            + [ratio(times[(a, size)], times[(b, size)]) for _, a, b in ratios]
            for size in SIZES
        ],
    )


def run_tables(run):
    for group in GROUPS:
        times = {
            (variant, size): run.median_ns(group, variant, size)
            for variant in VARIANTS
            for size in SIZES
        }
        present = [
            v for v in VARIANTS if any(times[(v, size)] is not None for size in SIZES)
        ]
        if not present:
            continue
        print(f"### {group}\n")
        table(
            ["N"] + present,
            [
                [str(size)] + [fmt_time(times[(v, size)]) for v in present]
                for size in SIZES
            ],
        )

        ratio_table("Ratios of medians:", RATIOS, times)
        ratio_table("Against the floor (ratios of medians):", FLOOR_RATIOS, times)

        per_step = [v for v in PER_STEP if v in present]
        if per_step:
            print("Per step (median / N):\n")
            rows = []
            for size in SIZES:
                cells = [str(size)]
                for variant in per_step:
                    t = times[(variant, size)]
                    cells.append("-" if t is None else f"{t / size:.2f} ns")
                rows.append(cells)
            table(["N"] + per_step, rows)


def build_table(run):
    times = {size: [run.median_ns("build", v, size) for v in BUILD] for size in SIZES}
    if all(t is None for row in times.values() for t in row):
        return
    print("### build (median; the result is dropped outside the measurement)\n")
    rows = []
    for size in SIZES:
        engine = times[size][2]
        per_step = "-" if engine is None else f"{engine / size:.1f} ns"
        rows.append([str(size)] + [fmt_time(t) for t in times[size]] + [per_step])
    table(["N"] + BUILD + ["engine per step"], rows)


def comparison_tables(first, second):
    print("## Second run over first (median / median)\n")
    print(f"First: {first.label()}; second: {second.label()}.\n")
    for group in GROUPS + ["build"]:
        variants = BUILD if group == "build" else VARIANTS
        cells = {}
        for variant in variants:
            for size in SIZES:
                a = first.median_ns(group, variant, size)
                b = second.median_ns(group, variant, size)
                if a is not None and b is not None:
                    cells[(variant, size)] = ratio(b, a)
        present = [v for v in variants if any((v, size) in cells for size in SIZES)]
        if not present:
            continue
        print(f"### {group}\n")
        table(
            ["N"] + present,
            [
                [str(size)] + [cells.get((v, size), "-") for v in present]
                for size in SIZES
            ],
        )


def default_root():
    target = os.environ.get("CARGO_TARGET_DIR")
    return os.path.join(target if target else "target", "criterion")


def parse_runs(argv):
    parser = argparse.ArgumentParser(
        description="Summarise the overhead bench's criterion estimates.",
        epilog="Two directories or two baselines: two runs, compared.",
    )
    parser.add_argument(
        "dirs",
        nargs="*",
        metavar="DIR",
        help="criterion directory (default: $CARGO_TARGET_DIR/criterion or target/criterion)",
    )
    parser.add_argument(
        "-b",
        "--baseline",
        action="append",
        default=[],
        metavar="NAME",
        help="criterion baseline to read (default: new); give it twice for two runs",
    )
    args = parser.parse_args(argv)
    dirs = args.dirs or [default_root()]
    baselines = args.baseline or ["new"]
    count = max(len(dirs), len(baselines))
    if count > 2:
        parser.error("at most two runs: two directories and/or two baselines")
    if len(dirs) not in (1, count) or len(baselines) not in (1, count):
        parser.error("give one or two directories and one or two baselines")
    dirs = dirs * (count // len(dirs))
    baselines = baselines * (count // len(baselines))
    return [Run(root, baseline) for root, baseline in zip(dirs, baselines)]


def main(argv):
    runs = parse_runs(argv)
    for run in runs:
        if not run.any_estimate():
            sys.exit(f"no overhead estimates in {run.label()}")
    for run in runs:
        if len(runs) > 1:
            print(f"## Run: {run.label()}\n")
        run_tables(run)
        build_table(run)
    if len(runs) == 2:
        comparison_tables(*runs)


if __name__ == "__main__":
    main(sys.argv[1:])
