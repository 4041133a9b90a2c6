"""Regenerate the demo project's allocation tables in REDCap's allocation-table CSV format.

The tables are committed; this script exists so that anyone can see how they were made and
reproduce them byte for byte (fixed seeds). Each stratum (sex x age group x DAG) gets permuted
blocks of size 3 or 6 over the three arms, and the strata are interleaved in the file the way an
uploaded table usually is, so "lowest unused row of the stratum" differs from "first free row".

Usage: ``python scripts/generate_demo_allocations.py [--check]``
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent.parent / "airflow_provider_redcap/emulator/projects/demo_trial"

ARMS = ("1", "2", "3")
SEXES = ("0", "1")
AGE_GROUPS = ("1", "2", "3")
DAG_IDS = ("2201", "2202", "2203")
STRATA = [(sex, age, dag) for dag in DAG_IDS for sex in SEXES for age in AGE_GROUPS]

OPEN_RID = 48213
CONCEALED_RID = 48297
OPEN_HEADER = [
    "redcap_randomization_group",
    "redcap_randomization_number",
    "sex",
    "age_group",
    "redcap_data_access_group",
]
CONCEALED_HEADER = [
    "redcap_randomization_number",
    "redcap_randomization_group",
    "sex",
    "age_group",
    "redcap_data_access_group",
]

# status -> (rows per stratum, seed); the two statuses must never produce the same table.
PLAN = {"production": (9, 20260412), "development": (6, 19990101)}


def permuted_blocks(rng: random.Random, rows: int) -> list[str]:
    """Arm codes for one stratum: whole permuted blocks of 3 or 6, ``rows`` in total."""
    arms: list[str] = []
    while len(arms) < rows:
        size = 6 if rows - len(arms) >= 6 and rng.random() < 0.5 else 3
        block = list(ARMS) * (size // 3)
        rng.shuffle(block)
        arms.extend(block)
    return arms


def interleave(rng: random.Random, per_stratum: dict[tuple[str, str, str], list[str]]) -> list[tuple]:
    """Merge the strata's sequences into one file order, keeping each stratum's own order."""
    queues = {stratum: list(arms) for stratum, arms in per_stratum.items()}
    merged: list[tuple] = []
    while queues:
        weights = [len(q) for q in queues.values()]
        stratum = rng.choices(list(queues), weights=weights)[0]
        merged.append((stratum, queues[stratum].pop(0)))
        if not queues[stratum]:
            del queues[stratum]
    return merged


def build_tables(status: str) -> tuple[str, str]:
    """Return (open table, concealed table) CSV texts for one project status."""
    rows_per_stratum, seed = PLAN[status]
    rng = random.Random(seed)
    prefix = "" if status == "production" else "T"

    open_order = interleave(rng, {s: permuted_blocks(rng, rows_per_stratum) for s in STRATA})
    open_out = io.StringIO()
    writer = csv.writer(open_out, lineterminator="\n")
    writer.writerow(OPEN_HEADER)
    for n, ((sex, age, dag), arm) in enumerate(open_order, start=1):
        writer.writerow([arm, f"{prefix}R-{n:04d}", sex, age, dag])

    concealed_order = interleave(rng, {s: permuted_blocks(rng, rows_per_stratum) for s in STRATA})
    # Kits are packed and numbered centrally, then shipped in shuffled order: numbers are not
    # monotonic in upload order, so allocation order can only follow the row order.
    kits = [f"{prefix}K-{1001 + i}" for i in range(len(concealed_order))]
    rng.shuffle(kits)
    concealed_out = io.StringIO()
    writer = csv.writer(concealed_out, lineterminator="\n")
    writer.writerow(CONCEALED_HEADER)
    for kit, ((sex, age, dag), arm) in zip(kits, concealed_order, strict=True):
        writer.writerow([kit, arm, sex, age, dag])
    return open_out.getvalue(), concealed_out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed tables differ")
    args = parser.parse_args(argv)
    stale = []
    for status in PLAN:
        open_csv, concealed_csv = build_tables(status)
        for rid, text in ((OPEN_RID, open_csv), (CONCEALED_RID, concealed_csv)):
            path = DEMO_DIR / f"allocation_{rid}_{status}.csv"
            if args.check:
                if not path.exists() or path.read_text() != text:
                    stale.append(path.name)
            else:
                path.write_text(text)
                print(f"wrote {path} ({text.count(chr(10)) - 1} rows)")
    if stale:
        print("stale allocation tables: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
