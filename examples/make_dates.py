"""Generate the quickstart dataset: dates written the way people write them -> ISO 8601.

    python examples/make_dates.py            # writes examples/dates_train.jsonl and dates_heldout.jsonl

Seeded, so the committed .jsonl files are exactly what this script writes. Each row is a chat
turn pair (`messages`), the format SmolLM2-Instruct was trained on. The answer is the bare
date `YYYY-MM-DD`, short enough that exact match is a fair score. SmolLM2-135M-Instruct
mostly does not follow this format (it echoes the date, adds a time, or explains), which is
what the quickstart teaches it. Held-out dates never occur in the training file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
from collections.abc import Callable
from pathlib import Path

SEED = 20240601
TRAIN_ROWS = 400
HELDOUT_ROWS = 40
FIRST_YEAR, LAST_YEAR = 1950, 2049

MONTHS = [dt.date(2000, m, 1).strftime("%B") for m in range(1, 13)]
WEEKDAYS = [dt.date(2024, 1, d).strftime("%A") for d in range(1, 8)]  # 2024-01-01 was a Monday

QUESTIONS = [
    "Convert this date to ISO 8601 (YYYY-MM-DD): {date}",
    "Write {date} in ISO 8601 format.",
    "What is {date} as YYYY-MM-DD?",
    "ISO date for: {date}",
    "Normalize the date '{date}' to YYYY-MM-DD.",
]


def ordinal(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def abbreviation(month: str) -> str:
    return month if len(month) <= 4 else month[:3]  # "May", "June", "July" stay whole, as people write them


DATE_STYLES: list[Callable[[dt.date], str]] = [
    lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
    lambda d: f"{abbreviation(MONTHS[d.month - 1])} {d.day}, {d.year}",
    lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
    lambda d: f"{d.day} {abbreviation(MONTHS[d.month - 1])} {d.year}",
    lambda d: f"the {ordinal(d.day)} of {MONTHS[d.month - 1]}, {d.year}",
    lambda d: f"{MONTHS[d.month - 1]} {ordinal(d.day)}, {d.year}",
    lambda d: f"{WEEKDAYS[d.weekday()]}, {MONTHS[d.month - 1]} {d.day}, {d.year}",
]


def random_date(rng: random.Random) -> dt.date:
    first = dt.date(FIRST_YEAR, 1, 1).toordinal()
    last = dt.date(LAST_YEAR, 12, 31).toordinal()
    return dt.date.fromordinal(rng.randint(first, last))


def make_row(rng: random.Random, date: dt.date) -> dict[str, object]:
    written = rng.choice(DATE_STYLES)(date)
    question = rng.choice(QUESTIONS).format(date=written)
    return {
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": date.isoformat()},
        ]
    }


def make_split(rng: random.Random, count: int, taken: set[dt.date]) -> list[dict[str, object]]:
    rows = []
    while len(rows) < count:
        date = random_date(rng)
        if date in taken:
            continue
        taken.add(date)
        rows.append(make_row(rng, date))
    return rows


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--train-rows", type=int, default=TRAIN_ROWS)
    parser.add_argument("--heldout-rows", type=int, default=HELDOUT_ROWS)
    args = parser.parse_args()
    rng = random.Random(SEED)
    taken: set[dt.date] = set()
    heldout = make_split(rng, args.heldout_rows, taken)
    train = make_split(rng, args.train_rows, taken)
    write_jsonl(args.out / "dates_train.jsonl", train)
    write_jsonl(args.out / "dates_heldout.jsonl", heldout)
    print(f"wrote {len(train)} training rows and {len(heldout)} held-out rows to {args.out}")


if __name__ == "__main__":
    main()
