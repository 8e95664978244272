"""Generate the quickstart's preference pairs: the ISO date preferred over the usual wrong answers.

    python examples/make_date_pairs.py   # writes examples/date_pairs_train.jsonl and date_pairs_heldout.jsonl

Seeded, so the committed files are exactly what this script writes. Each row is trl's
conversational preference format: the user's question as `prompt` (one chat turn), and the
`chosen` / `rejected` assistant turns. The chosen answer is the bare ISO date; the rejected one
is a mistake a model makes with dates: day and month swapped (when both are 12 or less), the
date echoed as written, a timestamp appended, or the US form MM/DD/YYYY. The held-out pairs ask
exactly the 40 held-out questions of dates_heldout.jsonl (so exact match is comparable with the
SFT quickstart); no training date occurs in either quickstart file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
from pathlib import Path

from make_dates import DATE_STYLES, QUESTIONS, random_date, write_jsonl

SEED = 20240602
TRAIN_PAIRS = 160
HERE = Path(__file__).resolve().parent


def wrong_answers(date: dt.date, written: str) -> list[str]:
    """Mistakes a small model makes for this date, each different from the ISO answer."""
    answers = [written, f"{date.isoformat()}T00:00:00Z", date.strftime("%m/%d/%Y")]
    if date.day <= 12 and date.day != date.month:
        answers.append(f"{date.year:04d}-{date.day:02d}-{date.month:02d}")
    return answers


def make_pair(rng: random.Random, question: str, date: dt.date, written: str) -> dict[str, object]:
    rejected = rng.choice(wrong_answers(date, written))
    return {
        "prompt": [{"role": "user", "content": question}],
        "chosen": [{"role": "assistant", "content": date.isoformat()}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


def heldout_pairs(rng: random.Random, heldout_file: Path) -> list[dict[str, object]]:
    """Pairs for the held-out questions of the SFT quickstart, parsed back from their rows."""
    pairs = []
    for line in heldout_file.read_text(encoding="utf-8").splitlines():
        question, answer = (turn["content"] for turn in json.loads(line)["messages"])
        date = dt.date.fromisoformat(answer)
        written = next(style(date) for style in DATE_STYLES if style(date) in question)
        pairs.append(make_pair(rng, question, date, written))
    return pairs


def quickstart_dates(files: list[Path]) -> set[dt.date]:
    dates = set()
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            dates.add(dt.date.fromisoformat(json.loads(line)["messages"][-1]["content"]))
    return dates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--train-pairs", type=int, default=TRAIN_PAIRS)
    args = parser.parse_args()
    rng = random.Random(SEED)
    held = heldout_pairs(rng, HERE / "dates_heldout.jsonl")
    taken = quickstart_dates([HERE / "dates_train.jsonl", HERE / "dates_heldout.jsonl"])
    train = []
    while len(train) < args.train_pairs:
        date = random_date(rng)
        if date in taken:
            continue
        taken.add(date)
        written = rng.choice(DATE_STYLES)(date)
        train.append(make_pair(rng, rng.choice(QUESTIONS).format(date=written), date, written))
    write_jsonl(args.out / "date_pairs_train.jsonl", train)
    write_jsonl(args.out / "date_pairs_heldout.jsonl", held)
    print(f"wrote {len(train)} training pairs and {len(held)} held-out pairs to {args.out}")


if __name__ == "__main__":
    main()
