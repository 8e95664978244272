"""How many real axolotl configs ft takes as they are: the corpus of tests/axolotl_corpus (axolotl's
example configs at v0.4.0, v0.7.0 and v0.18.0, and configs users published), each run through
`ft validate`'s reading (data files that do not exist here set aside).

    .venv/bin/python bench/axolotl_compat.py

Per release, and the user-written set on its own line:
- accepted: loads (the supervised fine-tuning configs);
- refused, feature: one line naming a feature ft lacks (KTO, GRPO, multimodal, unsloth, ...);
- refused, config error: the config's own error (a key no axolotl release defined, a key given
  twice, a broken custom format, a placeholder Hub repo), with the reasons;
- crashed: anything else (goal: 0);
- and "unknown key" problems for a key that some axolotl release defined (goal: 0).
Goal: every config not refused for a feature is accepted, but those with errors of their own.
The time to read a config is printed against yaml.safe_load of the same file (a baseline measured
in the same run: timings on a shared machine are noisy).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict

import yaml

import _env  # noqa: F401  (tests/ on sys.path, offline)
from axolotl_corpus_outcomes import corpus_files, feature_name, group, is_feature_refusal
from ft.base.errors import ConfigError
from ft.config.axolotl_table import known_keys
from ft.config.load import read_config


def classify(path) -> tuple[str, list[str]]:
    try:
        read_config(path, check_files=False)
    except ConfigError as err:
        kind = "feature" if is_feature_refusal(err.problems) else "config error"
        return kind, err.problems
    except Exception as err:
        return "crashed", [f"{type(err).__name__}: {err}"]
    return "accepted", []


def known_key_called_unknown(problems: list[str]) -> list[str]:
    found = []
    for problem in problems:
        path, _, message = problem.partition(": ")
        level = "dataset" if path.startswith(("datasets[", "test_datasets[")) else "top"
        if message.startswith("unknown key") and path.split(".")[-1] in known_keys()[level]:
            found.append(problem)
    return found


def main() -> None:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    features: Counter[str] = Counter()
    reasons: dict[str, list[str]] = defaultdict(list)
    wrongly_unknown: list[str] = []
    files = corpus_files()
    started = time.perf_counter()
    for path in files:
        kind, problems = classify(path)
        counts[group(path)][kind] += 1
        if kind == "feature":
            features.update({feature_name(p) for p in problems})
        wrongly_unknown += known_key_called_unknown(problems)
        if kind in ("config error", "crashed"):
            reasons[group(path)].append(
                f"{path.name}: {problems[0]}" + (f" (+{len(problems) - 1})" if len(problems) > 1 else "")
            )
    ft_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for path in files:
        yaml.safe_load(path.read_text(encoding="utf-8"))
    yaml_seconds = time.perf_counter() - started

    kinds = ("accepted", "feature", "config error", "crashed")
    print(
        f"{'corpus':18} {'configs':>7} "
        + " ".join(f"{k:>12}" for k in kinds)
        + "   accepted of the non-feature ones"
    )
    for name in ("axolotl-v0.4.0", "axolotl-v0.7.0", "axolotl-v0.18.0", "users"):
        c = counts[name]
        total = sum(c.values())
        non_feature = total - c["feature"]
        print(
            f"{name:18} {total:>7} "
            + " ".join(f"{c[k]:>12}" for k in kinds)
            + f"   {c['accepted']}/{non_feature} ({100 * c['accepted'] / max(non_feature, 1):.0f}%)"
        )
    print(f"'unknown key' for a key some axolotl release defined: {len(wrongly_unknown)}")
    for line in wrongly_unknown:
        print(f"  {line}")
    for name, lines in reasons.items():
        print(f"{name}: refused for errors of their own / crashed:")
        for line in lines:
            print(f"  {line[:160]}")
    print("features ft lacks, by configs refused for them:")
    print("  " + ", ".join(f"{name} {n}" for name, n in features.most_common()))
    per_config = 1000 * ft_seconds / len(files)
    print(
        f"reading time: {per_config:.1f} ms per config with ft's checks, "
        f"{1000 * yaml_seconds / len(files):.2f} ms with yaml.safe_load alone ({ft_seconds / yaml_seconds:.1f}x)"
    )


if __name__ == "__main__":
    main()
