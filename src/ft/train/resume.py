"""`--resume` against what the run was started with: the saved config.yml and the data's content.

A resume continues the optimizer, the scheduler and the data position of the run as it was
configured; a config changed since (5 planned steps become 50, another learning rate) would
silently train something else. So a difference is refused with the keys listed, unless
`--allow-changes`, and then the changes are recorded in run.json's `resumes`.

Where the run lives may change (a folder copied or moved to another machine): `output_dir`,
`resume_from_checkpoint` and `dataset_prepared_path` are not compared, nor the datasets' paths,
whose content is compared instead (the files' bytes, once the data is read).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ft.base.errors import FtError
from ft.config.load import dump_config
from ft.config.schema import FtConfig
from ft.runs.folder import CONFIG_YML

FREE_KEYS = frozenset({"output_dir", "resume_from_checkpoint", "dataset_prepared_path"})
"""Top-level keys that may differ on resume: where the run and its cache live."""
FREE_DATASET_KEYS = frozenset({"path"})
"""Keys of a dataset entry that may differ: its content is compared instead."""
SHOWN_CHANGES = 20
ALLOW_HINT = (
    "resume with the config the run started with (undo the change or drop the --set), or add "
    "--allow-changes to continue with the new values (recorded in run.json)"
)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{'datasets[0].type': 'alpaca', 'lora_r': 8, ...}: mappings by key, lists of mappings by index,
    other lists as one value."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        flat = {}
        for index, item in enumerate(value):
            flat.update(flatten(item, f"{prefix}[{index}]"))
        return flat
    return {prefix: value}


def _compared(key: str) -> bool:
    top = key.split(".", 1)[0].split("[", 1)[0]
    if top in FREE_KEYS:
        return False
    leaf = key.rsplit(".", 1)[-1]
    return not (top in ("datasets", "test_datasets") and leaf in FREE_DATASET_KEYS)


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, list[Any]]:
    """{key: [saved value, current value]} for the keys both configs have (a key that a newer ft
    added, or an older one dropped, is not a change of the user's)."""
    old, new = flatten(saved), flatten(current)
    return {
        key: [old[key], new[key]]
        for key in sorted(old.keys() & new.keys())
        if _compared(key) and old[key] != new[key]
    }


def saved_config(run_dir: Path) -> dict[str, Any] | None:
    """The run's config.yml as a mapping; None when the folder has none (a run of an older ft)."""
    try:
        data = yaml.safe_load((run_dir / CONFIG_YML).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _shown(value: Any) -> str:
    return "(not set)" if value is None else repr(value)


def change_lines(changes: dict[str, list[Any]]) -> list[str]:
    lines = [f"  {key}: {_shown(old)} -> {_shown(new)}" for key, (old, new) in changes.items()]
    if len(lines) > SHOWN_CHANGES:
        lines = [*lines[:SHOWN_CHANGES], f"  ... and {len(lines) - SHOWN_CHANGES} more"]
    return lines


def check_config_changes(run_dir: Path, cfg: FtConfig, allow_changes: bool) -> dict[str, list[Any]]:
    """The changes against the saved config.yml; FtError listing them unless `allow_changes`."""
    saved = saved_config(run_dir)
    if saved is None:
        return {}
    current = yaml.safe_load(dump_config(cfg))
    changes = config_changes(saved, current)
    if changes and not allow_changes:
        raise FtError(
            f"--resume: the config differs from the one {run_dir} was started with "
            f"({run_dir / CONFIG_YML}):\n" + "\n".join(change_lines(changes)),
            hint=ALLOW_HINT,
        )
    return changes


def check_data_change(saved: str | None, current: str, allow_changes: bool) -> dict[str, list[Any]]:
    """{'data': [saved, current]} when the training data's content changed since the run started;
    FtError unless `allow_changes`. Nothing when the run recorded no content digest."""
    if not saved or saved == current:
        return {}
    if not allow_changes:
        raise FtError(
            "--resume: the training data changed since the run started (the datasets' content, or "
            f"the tokenizer, differs: {saved} -> {current})",
            hint=ALLOW_HINT,
        )
    return {"data": [saved, current]}
