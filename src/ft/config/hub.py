"""Reaching the Hugging Face Hub, or not: one quick probe, then the local cache, decided before any
Hugging Face library is imported.

Without a network and without `HF_HUB_OFFLINE`, huggingface_hub retries each request for tens of
seconds before it gives up (`ft format` on a Hub model: 51 s before its message). So every command
that may touch the Hub calls `prepare_hub_access` first, right after reading the config:

- nothing of the Hub is needed (local model and data): Hub access is switched off, so that trl's
  telemetry and look-ups open no connections;
- otherwise one quick probe (a HEAD request to the Hub endpoint, at most `PROBE_TIMEOUT_S`). When
  it fails, Hub access is switched off and what the command needs must be in the local cache,
  else one error lists each missing repository with its `hf download` command. A run that is to
  be pushed at its end (hub_model_id) stops here instead, and keeps Hub access on when it answers.

The switch is the libraries' own `HF_HUB_OFFLINE=1` / `HF_DATASETS_OFFLINE=1`, which huggingface_hub
and datasets read when they are imported: hence before. The cache is looked up by its documented
layout (`models--ORG--NAME/refs/REVISION`, `snapshots/COMMIT/FILE`), without importing
huggingface_hub. Only `ft/config` (this module) probes; the probe's answer is kept for the process.
"""

from __future__ import annotations

import os
import re
import shlex
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ft.base.errors import FtError
from ft.config.sources import HUB_ID, PACKAGE_SCHEME

if TYPE_CHECKING:
    from ft.config.schema import FtConfig, ModelSettings

PROBE_TIMEOUT_S = 3.0
DEFAULT_ENDPOINT = "https://huggingface.co"
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")
TRUE_WORDS = ("1", "true", "yes", "on")
WEIGHT_FILES = re.compile(r".*\.(safetensors|bin)(\.index\.json)?$")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
TOKENIZER_PATTERNS = ("config.json", "tokenizer*", "special_tokens_map.json", "*.model")

Need = Literal["weights", "config", "tokenizer", "data", "upload"]
"""What a command reads from a Hub repository: model weights (and config), the model's config.json
only (ft plan), its tokenizer (ft format), a dataset; or writes: the run pushed to hub_model_id."""
MODEL_NEEDS: tuple[Need, ...] = ("weights", "config", "tokenizer")
"""Most first: weights include the config and the tokenizer."""
EVAL_NEEDS: tuple[Need, ...] = ("weights", "data")
"""What ft eval reads."""
TRAIN_NEEDS: tuple[Need, ...] = ("weights", "data", "upload")
"""What ft train reads, and the push at its end when the config names hub_model_id."""


@dataclass(frozen=True)
class HubRef:
    """One Hub repository a command needs, and what of it."""

    key: str
    repo_id: str
    need: Need
    revision: str | None = None

    @property
    def repo_type(self) -> str:
        return "dataset" if self.need == "data" else "model"

    def download_command(self) -> str:
        words = ["hf", "download"]
        if self.repo_type == "dataset":
            words += ["--repo-type", "dataset"]
        words.append(self.repo_id)
        if self.need == "config":
            words.append("config.json")
        elif self.need == "tokenizer":
            words += ["--include", *TOKENIZER_PATTERNS]
        if self.revision:
            words += ["--revision", self.revision]
        return shlex.join(words)


# ---------------------------------------------------------------------------------------------
# What a config needs from the Hub


def is_hub_dataset(path: str) -> bool:
    """As ft.data.rows reads it: a dataset path is a Hub id unless it looks or is local."""
    return not (path.startswith((".", "/", "~")) or Path(path).expanduser().exists())


def _hub_model(ref: str | None) -> bool:
    """As ft.config.sources.resolve_model_source classifies it, without its errors for local paths."""
    if not ref or ref.startswith(PACKAGE_SCHEME):
        return False
    looks_local = ref.startswith((".", "/", "~")) or ref.endswith(".gguf") or Path(ref).expanduser().exists()
    return not looks_local and HUB_ID.match(ref) is not None


def model_refs(cfg: ModelSettings, need: Need) -> list[HubRef]:
    """The base model (and a separate tokenizer) when they are Hub ids."""
    refs = []
    if _hub_model(cfg.base_model) and not (need == "tokenizer" and cfg.tokenizer_config):
        refs.append(HubRef("base_model", cfg.base_model, need, cfg.revision))
    if need in ("weights", "tokenizer") and cfg.tokenizer_config and _hub_model(cfg.tokenizer_config):
        refs.append(HubRef("tokenizer_config", cfg.tokenizer_config, "tokenizer", cfg.revision))
    return refs


def hub_refs(cfg: FtConfig, needs: Iterable[Need]) -> list[HubRef]:
    """The Hub repositories a command with these `needs` reads for this config."""
    wanted = set(needs)
    refs: list[HubRef] = []
    model_need = next((need for need in MODEL_NEEDS if need in wanted), None)
    if model_need is not None:
        refs += model_refs(cfg, model_need)
    if "weights" in wanted and cfg.lora_model_dir and _hub_model(cfg.lora_model_dir):
        refs.append(HubRef("lora_model_dir", cfg.lora_model_dir, "config"))
    if "data" in wanted:
        for prefix, datasets in (("datasets", cfg.datasets), ("test_datasets", cfg.test_datasets or [])):
            for index, dataset in enumerate(datasets):
                if is_hub_dataset(dataset.path):
                    refs.append(HubRef(f"{prefix}[{index}].path", dataset.path, "data", dataset.revision))
    if "upload" in wanted and cfg.hub_model_id:
        refs.append(HubRef("hub_model_id", cfg.hub_model_id, "upload", cfg.hub_revision))
    return refs


# ---------------------------------------------------------------------------------------------
# The local cache


def hub_cache_dir() -> Path:
    """huggingface_hub's cache: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    )
    return Path(home).expanduser() / "hub"


def datasets_cache_dir() -> Path:
    """datasets' own cache of prepared Arrow files: HF_DATASETS_CACHE, else HF_HOME/datasets."""
    if os.environ.get("HF_DATASETS_CACHE"):
        return Path(os.environ["HF_DATASETS_CACHE"]).expanduser()
    return hub_cache_dir().parent / "datasets"


def cached_snapshot(repo_id: str, repo_type: str = "model", revision: str | None = None) -> Path | None:
    """The snapshot folder of a repository in the local cache, or None (no request is made)."""
    repo = hub_cache_dir() / f"{repo_type}s--{repo_id.replace('/', '--')}"
    ref = revision or "main"
    if re.fullmatch(r"[0-9a-f]{40}", ref):
        commit = ref
    else:
        try:
            commit = (repo / "refs" / ref).read_text(encoding="utf-8").strip()
        except OSError:
            return None
    snapshot = repo / "snapshots" / commit
    return snapshot if snapshot.is_dir() else None


def cached_file(repo_id: str, filename: str, revision: str | None = None) -> Path | None:
    """A file of a Hub model in the local cache (huggingface_hub's try_to_load_from_cache, by hand)."""
    snapshot = cached_snapshot(repo_id, "model", revision)
    path = snapshot / filename if snapshot is not None else None
    return path if path is not None and path.is_file() else None


def repo_id_of_cached_path(path: str) -> str | None:
    """'.../hub/models--org--name/snapshots/abc/' -> 'org/name': a folder of the Hub cache."""
    for part in Path(path).parts:
        if part.startswith("models--") and part.count("--") >= 2:
            return part.removeprefix("models--").replace("--", "/", 1)
    return None


def is_cached(ref: HubRef) -> bool:
    """The cache holds what the command needs of `ref` (never an upload)."""
    if ref.need == "upload":
        return False
    if ref.need == "data":
        arrow = datasets_cache_dir() / ref.repo_id.replace("/", "___")
        return cached_snapshot(ref.repo_id, "dataset", ref.revision) is not None or arrow.is_dir()
    snapshot = cached_snapshot(ref.repo_id, "model", ref.revision)
    if snapshot is None:
        return False
    names = {path.name for path in snapshot.iterdir()}
    if ref.need == "tokenizer":
        return bool(names & set(TOKENIZER_FILES))
    if ref.need == "config" or ref.key == "lora_model_dir":
        return bool(names & {"config.json", "adapter_config.json"})
    return "config.json" in names and any(WEIGHT_FILES.match(name) for name in names)


# ---------------------------------------------------------------------------------------------
# The probe and the decision


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUE_WORDS


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def probe_hub(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when the Hub endpoint answers (any HTTP status) within `timeout`, else why not. Asked
    once per endpoint in a process: every later caller gets the same answer at once."""
    return probe_url(endpoint(), timeout)


@cache
def probe_url(url: str, timeout: float) -> str | None:
    """In a thread joined with the timeout: urllib's own timeout does not cover the name lookup.
    Proxies from the environment (https_proxy) are used, as the Hugging Face libraries use them."""
    outcome: list[str | None] = []

    def ask() -> None:
        request = urllib.request.Request(url, method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                outcome.append(None)
        except urllib.error.HTTPError:  # an answer, whatever it says
            outcome.append(None)
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            # urllib's own timeout can fire just before the join's: the same outcome, said the same way.
            timed_out = isinstance(reason, TimeoutError)
            outcome.append(no_answer(timeout) if timed_out else f"{type(reason).__name__}: {reason}")

    thread = threading.Thread(target=ask, daemon=True, name="ft-hub-probe")
    thread.start()
    thread.join(timeout)
    if not outcome:
        return no_answer(timeout)
    return outcome[0]


def no_answer(timeout: float) -> str:
    return f"no answer within {timeout:g} s"


def go_offline(override: bool) -> None:
    """HF_HUB_OFFLINE=1 and friends for this process (and the libraries it imports from now on);
    `override` also replaces a value the user set (the Hub cannot be reached anyway)."""
    for name in OFFLINE_VARIABLES:
        if override:
            os.environ[name] = "1"
        else:
            os.environ.setdefault(name, "1")


def missing_error(missing: list[HubRef], why: str) -> FtError:
    lines = [f"  {ref.key}: {ref.repo_id}" for ref in missing]
    commands = "; ".join(dict.fromkeys(ref.download_command() for ref in missing))
    return FtError(
        f"{why}, and the local Hugging Face cache lacks:\n" + "\n".join(lines),
        hint=f"with network access, download once: {commands} (or point the config at local files)",
    )


def upload_error(upload: HubRef, why: str) -> FtError:
    return FtError(
        f"{upload.key}: {why}, so the run could not be pushed to {upload.repo_id} when it ends",
        hint=f"train without it (--set hub_model_id=) and push the run folder later: ft push RUN_DIR {upload.repo_id}",
    )


def prepare_hub_access(cfg: FtConfig, needs: Iterable[Need]) -> list[str]:
    """Decide Hub access for a command before the Hugging Face libraries are imported; returns notes
    for the user; raises FtError when the Hub is needed, cannot be reached and the cache lacks it,
    or when the run is to be pushed (hub_model_id) and the Hub cannot be reached: before training,
    not after it. A command that pushes never switches Hub access off."""
    refs = hub_refs(cfg, needs)
    upload = next((ref for ref in refs if ref.need == "upload"), None)
    if not refs:
        if not hub_offline():
            go_offline(override=False)
            return ["model and data are local: Hugging Face Hub access is off (HF_HUB_OFFLINE=1)"]
        return []
    if hub_offline():
        if upload is not None:
            raise upload_error(upload, "HF_HUB_OFFLINE is set")
        missing = [ref for ref in refs if not is_cached(ref)]
        if missing:
            raise missing_error(missing, "HF_HUB_OFFLINE is set")
        return []
    why = probe_hub()
    if why is None:
        return []
    reason = f"the Hugging Face Hub ({endpoint()}) cannot be reached ({why})"
    if upload is not None:
        raise upload_error(upload, reason)
    go_offline(override=True)
    missing = [ref for ref in refs if not is_cached(ref)]
    if missing:
        raise missing_error(missing, reason)
    return [f"{reason}: using the local cache (HF_HUB_OFFLINE=1)"]
