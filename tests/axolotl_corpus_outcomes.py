"""The outcome of each config of tests/axolotl_corpus under `ft validate` (data files that do not
exist here set aside): used by tests/test_axolotl_corpus.py, which pins them, and by
bench/axolotl_compat.py, which counts them.

    python tests/axolotl_corpus_outcomes.py     # rewrite tests/axolotl_corpus/outcomes.json

Outcomes:
- accepted: loads; the notes ft prints (mapped and ignored keys) are pinned too;
- feature: refused with one line per feature ft lacks (KTO, GRPO, multimodal, ...);
- refused: refused for an error of the config itself (a key no axolotl release defined, a key
  given twice, a broken custom format), each problem pinned.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parent / "axolotl_corpus"
OUTCOMES = CORPUS / "outcomes.json"
FEATURE_LINES = (
    "is not available in ft (ft does not have it",
    "is not supported by ft: use rl: ",
    "type ft does not read (with rl, ft reads",
)
"""A feature ft lacks, an `rl:` method ft does not train, a pair dataset layout ft does not read."""


def is_feature_refusal(problems: list[str]) -> bool:
    return all(any(line in p for line in FEATURE_LINES) for p in problems)


def feature_name(problem: str) -> str:
    """`ReLoRA` of `relora_steps: 100: ReLoRA is not available in ft (...)`; `KTO (...)` of `rl: KTO (...) is not supported by ft: ...`."""
    if problem.startswith("rl: ") and FEATURE_LINES[1] in problem:
        return problem.removeprefix("rl: ").split(" is not supported")[0]
    if FEATURE_LINES[2] in problem:
        return "the preference-data type " + problem.split(": ", 1)[1].split(" is a ")[0]
    return problem.split(": ")[-1].split(" is not available")[0]


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*") if p.suffix in (".yml", ".yaml"))


def group(path: Path) -> str:
    """`axolotl-v0.4.0`, `axolotl-v0.7.0`, `axolotl-v0.18.0` or `users`."""
    return path.relative_to(CORPUS).parts[0]


def outcome(path: Path) -> dict[str, Any]:
    from ft.base.errors import ConfigError
    from ft.config.load import read_config

    try:
        _, notes = read_config(path, check_files=False)
    except ConfigError as err:
        kind = "feature" if is_feature_refusal(err.problems) else "refused"
        return {"outcome": kind, "problems": err.problems}
    return {"outcome": "accepted", "notes": notes}


def all_outcomes() -> dict[str, dict[str, Any]]:
    return {str(path.relative_to(CORPUS)): outcome(path) for path in corpus_files()}


if __name__ == "__main__":
    sys.path.insert(0, str(CORPUS.parent.parent / "src"))
    OUTCOMES.write_text(json.dumps(all_outcomes(), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUTCOMES}")
