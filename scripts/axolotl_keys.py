"""Generate src/ft/config/axolotl_keys.json: every config key of every axolotl release.

Reads a local git clone of axolotl-ai-cloud/axolotl (no network) and, for each release tag,
and for the last commit of each month on the main line, collects the top-level keys and the
per-dataset keys a config of that release may hold:
- releases with a pydantic schema (v0.5.0 on): the fields (and their aliases) of
  AxolotlInputConfig and its bases, of the plugins' argument classes (integrations/*/args.py),
  and of the dataset classes (SFTDataset, DPODataset, ...);
- older releases: the keys of the README's "All yaml options" reference, and the `cfg.<key>`
  reads of the source code (the code was the schema then).

The result maps each key to the first and the last release that knows it, and lists the
newest release's literal defaults (a key set to axolotl's default is as good as unset).

    python scripts/axolotl_keys.py /path/to/axolotl/.git

ft keeps the file in the package: an unset value of any key listed there is accepted without a
word, and every key listed there has a status in ft.config.axolotl_table (a test checks both).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src" / "ft" / "config" / "axolotl_keys.json"
DATASET_CLASSES = re.compile(r"(Dataset|PrompterType|DPOType|KTOType)$")
TOP_CLASS = "AxolotlInputConfig"
KEY = re.compile(r"^[a-z_][a-z0-9_]*$")


def git(repo: str, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", repo, *args], check=True, capture_output=True, text=True
    ).stdout


def release_tags(repo: str) -> list[tuple[str, str]]:
    """(tag, date) of every release tag v<major>.<minor>.<patch>, oldest first."""
    tags = [t for t in git(repo, "tag").split() if re.fullmatch(r"v\d+\.\d+\.\d+", t)]
    tags.sort(key=lambda t: tuple(int(x) for x in t[1:].split(".")))
    return [(t, git(repo, "log", "-1", "--format=%cs", t).strip()) for t in tags]


def monthly_snapshots(repo: str) -> list[tuple[str, str]]:
    """(commit, date) of the last commit of each month on the main line.

    Until 2025 axolotl's README told users to install from the main branch (and its Docker
    images were built from it), so keys that lived on main between two tags were real keys of
    real configs (`field_prompt` existed from February to May 2024, between v0.4.0 and v0.5.0).
    """
    lines = git(repo, "log", "--first-parent", "--format=%H %cs", "HEAD").split("\n")
    last_of_month: dict[str, tuple[str, str]] = {}
    for line in reversed([ln for ln in lines if ln.strip()]):
        commit, date = line.split()
        last_of_month[date[:7]] = (commit, date)
    return list(last_of_month.values())


def files(repo: str, tag: str) -> list[str]:
    return git(repo, "ls-tree", "-r", "--name-only", tag).split()


def show(repo: str, tag: str, path: str) -> str:
    return git(repo, "show", f"{tag}:{path}")


# ---------------------------------------------------------------------------------------------
# Releases with a pydantic schema


def schema_files(paths: list[str]) -> list[str]:
    return [
        p
        for p in paths
        if p.endswith(".py")
        and (
            "/utils/schemas/" in p
            or "/utils/config/models/input/" in p
            or re.search(r"/integrations/[^/]+/args\.py$", p)
        )
    ]


def class_fields(source: str) -> dict[str, tuple[list[str], set[str]]]:
    """class name -> (base names, field names and aliases) of a module's classes."""
    out: dict[str, tuple[list[str], set[str]]] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        bases = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases]
        names: set[str] = set()
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                names.add(item.target.id)
                names |= aliases(item.value)
        out[node.name] = (bases, names)
    return out


def aliases(value: ast.expr | None) -> set[str]:
    """`alias=` / `validation_alias=` strings of a Field(...) call: the key a user writes."""
    found: set[str] = set()
    if isinstance(value, ast.Call):
        for keyword in value.keywords:
            if keyword.arg in ("alias", "validation_alias"):
                found |= {
                    n.value
                    for n in ast.walk(keyword.value)
                    if isinstance(n, ast.Constant) and isinstance(n.value, str)
                }
    return found


NO_DEFAULT = object()


def literal_default(value: ast.expr | None) -> object:
    """The default of a field written as a literal (`= 0.1`, `Field(default=False)`), else NO_DEFAULT."""
    if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "Field":
        value = next((k.value for k in value.keywords if k.arg == "default"), None)
        if value is None:
            return NO_DEFAULT
    if value is None:
        return NO_DEFAULT
    try:
        return ast.literal_eval(value)
    except ValueError:
        return NO_DEFAULT


def schema_defaults(repo: str, tag: str, paths: list[str], keys: set[str]) -> dict[str, object]:
    """Literal defaults of the release's top-level fields (None and unset-like values left out)."""
    found: dict[str, object] = {}
    for path in schema_files(paths):
        for node in ast.walk(ast.parse(show(repo, tag, path))):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                default = literal_default(node.value)
                if node.target.id in keys and default not in (NO_DEFAULT, None, False, "", [], {}):
                    found.setdefault(node.target.id, default)
    return dict(sorted(found.items()))


def with_bases(classes: dict[str, tuple[list[str], set[str]]], name: str) -> set[str]:
    seen, todo, fields = set(), [name], set()
    while todo:
        current = todo.pop()
        if current in seen or current not in classes:
            continue
        seen.add(current)
        bases, names = classes[current]
        fields |= names
        todo += bases
    return fields


def schema_keys(repo: str, tag: str, paths: list[str]) -> tuple[set[str], set[str]]:
    classes: dict[str, tuple[list[str], set[str]]] = {}
    plugin_args: set[str] = set()
    for path in schema_files(paths):
        found = class_fields(show(repo, tag, path))
        if "/integrations/" in path:
            # A plugin's top-level keys are the fields of its *Args class (or SwanLabConfig);
            # its other classes are nested values.
            for name in found:
                if name.endswith("Args") or name == "SwanLabConfig":
                    plugin_args |= with_bases(found, name)
        classes.update(found)
    top = with_bases(classes, TOP_CLASS) | plugin_args
    dataset: set[str] = set()
    for name in classes:
        if DATASET_CLASSES.search(name) and name != TOP_CLASS:
            dataset |= with_bases(classes, name)
    return top, dataset


# ---------------------------------------------------------------------------------------------
# Releases before the schema: the README's reference and the code's reads


def readme_keys(text: str) -> tuple[set[str], set[str]]:
    """Top-level keys (indent 0) and dataset keys (inside `datasets:` items) of the YAML blocks."""
    top: set[str] = set()
    dataset: set[str] = set()
    in_yaml = False
    in_datasets = False
    for line in _config_blocks(text):
        if line.startswith("```"):
            in_yaml = line.strip() in ("```yaml", "```yml")
            in_datasets = False
            continue
        if not in_yaml or not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.match(r"^(\s*)(?:-\s+)?([A-Za-z_][A-Za-z0-9_]*):", line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        if indent == 0:
            top.add(key)
            in_datasets = key in ("datasets", "test_datasets", "pretraining_dataset")
        elif in_datasets:
            dataset.add(key)
    return top, dataset


def _config_blocks(text: str) -> list[str]:
    """The lines of the README's YAML blocks that are axolotl configs (they name base_model or
    datasets), not the accelerate or DeepSpeed settings shown beside them."""
    blocks = re.findall(r"^(```ya?ml\n.*?^```)", text, flags=re.M | re.S)
    keep = [b for b in blocks if re.search(r"^(base_model|datasets|lora_r|sequence_len):", b, flags=re.M)]
    return [line for block in keep for line in block.splitlines()]


def code_keys(repo: str, tag: str, paths: list[str]) -> tuple[set[str], set[str]]:
    top: set[str] = set()
    dataset: set[str] = set()
    for path in paths:
        if not (path.startswith("src/") or path == "scripts/finetune.py") or not path.endswith(".py"):
            continue
        text = show(repo, tag, path)
        top |= set(re.findall(r"\bcfg\.([a-z_][a-z0-9_]*)\b", text))
        top |= set(re.findall(r"\bcfg\[[\"']([a-z_][a-z0-9_]*)[\"']\]", text))
        # Dataset entries are read as `d.<key>`, `ds_cfg["<key>"]` or `config_dataset.<key>`.
        dataset |= set(re.findall(r"\b(?:d|ds_cfg|config_dataset|dataset)\.([a-z_][a-z0-9_]*)\b", text))
        dataset |= set(re.findall(r"\bds_cfg\[[\"']([a-z_][a-z0-9_]*)[\"']\]", text))
    # Methods of the dict wrapper, not keys.
    methods = {"get", "items", "keys", "values", "update", "pop", "copy", "to_dict", "setdefault"}
    dataset = {k for k in dataset if k not in methods and not k.startswith("_")}
    return {k for k in top if k not in methods}, dataset


def legacy_keys(repo: str, tag: str, paths: list[str]) -> tuple[set[str], set[str]]:
    top, dataset = readme_keys(show(repo, tag, "README.md"))
    code_top, code_dataset = code_keys(repo, tag, paths)
    # The code's dataset reads are noisy (`dataset.map`, ...): keep those the README names too,
    # and the code's reads of `d.` / `ds_cfg` that look like config keys.
    return top | code_top, dataset | {k for k in code_dataset if "_" in k or k in dataset}


# ---------------------------------------------------------------------------------------------


def keys_of_release(repo: str, tag: str) -> tuple[set[str], set[str]]:
    paths = files(repo, tag)
    if schema_files([p for p in paths if "/utils/" in p]):
        top, dataset = schema_keys(repo, tag, paths)
    else:
        top, dataset = legacy_keys(repo, tag, paths)
    return {k for k in top if KEY.match(k)}, {k for k in dataset if KEY.match(k)}


def main(repo: str) -> None:
    releases = release_tags(repo)
    snapshots = sorted(
        [(tag, tag, date) for tag, date in releases]
        + [(commit, f"main@{date[:7]}", date) for commit, date in monthly_snapshots(repo)],
        key=lambda item: item[2],
    )
    spans: dict[str, dict[str, list[str]]] = {"top": {}, "dataset": {}}
    for ref, label, _ in snapshots:
        for level, keys in zip(("top", "dataset"), keys_of_release(repo, ref), strict=True):
            for key in keys:
                spans[level].setdefault(key, [label, label])[1] = label
    newest = releases[-1][0]
    result = {
        "source": "github.com/axolotl-ai-cloud/axolotl, generated by scripts/axolotl_keys.py",
        "releases": {label: date for _, label, date in snapshots},
        "top": dict(sorted(spans["top"].items())),
        "dataset": dict(sorted(spans["dataset"].items())),
        # The newest release's literal defaults: a key set to its default changes nothing.
        "defaults": schema_defaults(repo, newest, files(repo, newest), set(spans["top"])),
    }
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{OUT}: {len(result['top'])} top-level keys, {len(result['dataset'])} dataset keys")


if __name__ == "__main__":
    main(sys.argv[1])
