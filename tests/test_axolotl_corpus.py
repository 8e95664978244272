"""Real axolotl configs: axolotl's example configs at three releases (v0.4.0, January 2024; v0.7.0,
February 2025; v0.18.0, July 2026) and configs users published in their own repositories
(tests/axolotl_corpus/users/SOURCES.md), each one's outcome under `ft validate` pinned in
tests/axolotl_corpus/outcomes.json (rewrite it with `python tests/axolotl_corpus_outcomes.py`,
then read the diff: every change of outcome is a change of behaviour)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from axolotl_corpus_outcomes import CORPUS, OUTCOMES, all_outcomes, corpus_files, group

PINNED = json.loads(OUTCOMES.read_text())


def test_the_corpus_holds_three_releases_and_thirty_user_configs_of_different_owners() -> None:
    groups = Counter(group(path) for path in corpus_files())
    assert (
        groups["axolotl-v0.4.0"] >= 40 and groups["axolotl-v0.7.0"] >= 90 and groups["axolotl-v0.18.0"] >= 250
    )
    users = [p for p in corpus_files() if group(p) == "users"]
    owners = {p.name.split("--")[0] for p in users}
    assert len(users) >= 30 and len(owners) >= 30
    sources = (CORPUS / "users" / "SOURCES.md").read_text()
    assert all(f"`{p.name}`" in sources for p in users)


def test_every_config_keeps_its_pinned_outcome() -> None:
    found = all_outcomes()
    assert sorted(found) == sorted(PINNED)
    changed = {name: found[name] for name in found if found[name] != PINNED[name]}
    assert changed == {}, "outcomes changed: review, then python tests/axolotl_corpus_outcomes.py"


def test_no_config_crashes_and_no_known_axolotl_key_is_unknown() -> None:
    """Every refusal is a clear line; none calls a key of some axolotl release an unknown key."""
    from ft.config.axolotl_table import known_keys

    for name, result in PINNED.items():
        for problem in result.get("problems", []):
            path, message = problem.split(": ", 1)
            if message.startswith("unknown key"):
                level = "dataset" if path.startswith(("datasets[", "test_datasets[")) else "top"
                assert path.split(".")[-1] not in known_keys()[level], (name, problem)


@pytest.mark.parametrize("release", ["axolotl-v0.4.0", "axolotl-v0.7.0", "axolotl-v0.18.0", "users"])
def test_refusals_are_features_or_errors_of_the_config_itself(release: str) -> None:
    """A refused config is either a feature ft lacks (one line per feature) or has a problem of its
    own: a key no release of axolotl defined, a key given twice, a broken custom format, a column
    key that axolotl reads for preference data only (in an SFT dataset, axolotl fails on it too), a
    placeholder left as the Hub repo (transformers refuses it too, before training), a dataset
    without a path, packing or padding asked for preference pairs (axolotl ignores them for rl; ft
    says so), or a pair layout ft does not read beside such an error."""
    own_errors = (
        "unknown key",
        "given twice",
        "unknown field",
        "unknown format 'json'",
        "reads it for preference",
        "is not a Hub repo id",
        "required, but not given",
        "preference pairs are not packed",
        "pads each batch to its longest pair",
        "type ft does not read (with rl",
    )
    for name, result in PINNED.items():
        if not name.startswith(release) or result["outcome"] != "refused":
            continue
        for problem in result["problems"]:
            assert any(marker in problem for marker in own_errors), (name, problem)
