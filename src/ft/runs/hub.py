"""Pushing a run folder, a merged folder or a GGUF file to the Hugging Face Hub.

The token comes from the environment only (`HF_TOKEN`): never from a config, never from a login
file, never printed. What is uploaded is an explicit list (`files_to_push`): a run folder's final
adapter, tokenizer and records, not its checkpoints; a merged folder's files; a GGUF file with its
Modelfile and record. A generated model card goes up as README.md. Before any upload, the one
quick probe of `ft.config.hub` checks that the Hub answers, so an unreachable Hub is a clear error
in seconds instead of a minute of retries. Everything goes up in one commit (`create_commit`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ft.base.errors import FtError

TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
RUN_FILES = (
    "adapter_config.json",
    "adapter_model.safetensors",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "config.yml",
    "run.json",
    "metrics.jsonl",
    "loss.png",
    "eval.json",
)
"""A run folder's files that go to the Hub (a full fine-tune's weights included); checkpoints,
hidden files and anything else in the folder stay local."""


class HubError(FtError):
    """The Hub cannot be reached, refuses the token, or refuses the upload."""


@dataclass(frozen=True)
class Push:
    repo_id: str
    revision: str | None
    files: list[tuple[Path, str]]
    """(local file, path in the repo)."""
    url: str | None


def hub_token() -> str:
    """The Hub token from the environment; FtError naming the variable when there is none."""
    for name in TOKEN_ENV:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    raise HubError(
        "no Hugging Face token in the environment: ft reads it from HF_TOKEN only (never from a config)",
        hint="export HF_TOKEN=hf_... (a token with write access, from huggingface.co/settings/tokens)",
    )


def files_to_push(path: Path) -> list[tuple[Path, str]]:
    """The exact files uploaded for a run folder, a merged folder or a GGUF file."""
    path = Path(path)
    if path.is_file():
        if path.suffix != ".gguf":
            raise FtError(f"{path}: ft pushes a run folder, a merged folder or a .gguf file")
        stem = path.name[: -len(".gguf")]
        sidecars = [path.with_name(f"{stem}.Modelfile"), path.with_name(f"{stem}.ft_export.json")]
        return [(p, p.name) for p in (path, *sidecars) if p.is_file()]
    if not path.is_dir():
        raise FtError(f"{path}: no such folder or file")
    if (path / "run.json").is_file():
        return [(path / name, name) for name in RUN_FILES if (path / name).is_file()]
    if not (path / "config.json").is_file():
        raise FtError(f"{path} is neither a run folder (run.json) nor a model folder (config.json)")
    return [
        (child, child.name)
        for child in sorted(path.iterdir())
        if child.is_file() and not child.name.startswith(".") and child.name != "README.md"
    ]


def check_reachable() -> None:
    """HubError when the Hub does not answer ft.config.hub's one quick probe (shared by every
    command of the process), or when HF_HUB_OFFLINE is set."""
    from ft.config.hub import endpoint, hub_offline, probe_hub

    if hub_offline():
        raise HubError(
            "HF_HUB_OFFLINE is set: ft will not contact the Hub", hint="unset HF_HUB_OFFLINE to push"
        )
    why = probe_hub()
    if why is not None:
        raise HubError(
            f"the Hugging Face Hub ({endpoint()}) cannot be reached ({why})",
            hint="check the network (or HF_ENDPOINT), then push again: ft push FOLDER REPO_ID",
        )


def push(
    path: Path,
    repo_id: str,
    card: Callable[[str], str],
    *,
    private: bool = False,
    revision: str | None = None,
    message: str | None = None,
) -> Push:
    """Upload the files of `path` and the card (made for the full repo id) to `repo_id` in one commit
    (the repo is created when missing); returns what was uploaded and the commit's URL."""
    token = hub_token()
    files = files_to_push(path)
    check_reachable()
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    repo_id = full_repo_id(repo_id, lambda: api.whoami()["name"])
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(local)) for local, name in files]
    readme = card(repo_id).encode("utf-8")
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=readme))
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.create_commit(
            repo_id, operations, commit_message=message or f"ft push {Path(path).name}", revision=revision
        )
    except Exception as err:  # huggingface_hub's HTTP errors: say which, never the request headers
        raise HubError(f"the Hub refused the upload to {repo_id}: {_reason(err)}", hint=_hint(err)) from None
    return Push(
        repo_id, revision, [*files, (Path("README.md"), "README.md")], getattr(commit, "commit_url", None)
    )


def full_repo_id(repo_id: str, own_namespace: Callable[[], str]) -> str:
    """`repo_id` with its namespace: a name alone goes to the token's own (as transformers does)."""
    if "/" in repo_id:
        return repo_id
    try:
        return f"{own_namespace()}/{repo_id}"
    except Exception as err:  # huggingface_hub's HTTP errors, as for the upload
        raise HubError(
            f"hub_model_id {repo_id!r} has no namespace and the Hub did not say whose the token is: "
            f"{_reason(err)}",
            hint="give the repo as org/name",
        ) from None


def _reason(err: Exception) -> str:
    response: Any = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    return f"HTTP {status}" if status else type(err).__name__


def _hint(err: Exception) -> str:
    response: Any = getattr(err, "response", None)
    if getattr(response, "status_code", None) in (401, 403):
        return (
            "the token in HF_TOKEN lacks write access to this repo (or the org): make one with write access"
        )
    return "check the repo id and the network, then push again"
