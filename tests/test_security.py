"""What a config may make ft run: no Python objects from YAML, no model code unless
`trust_remote_code: true`, no pickle weights unless `allow_pickle_weights: true`. The local-folder
checks run at `ft validate` time and again right before the weights load."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ft.base.errors import ModelLoadError
from ft.config.load import read_config
from ft.config.schema import FtConfig
from ft.models.precision import Precision
from test_config import problems

CPU = Precision("float32", bf16=False, fp16=False, use_cpu=True)
CUSTOM_CODE = {
    "AutoConfig": "configuration_tiny.TinyConfig",
    "AutoModelForCausalLM": "modeling_tiny.TinyForCausalLM",
}


def write_config(tmp_path: Path, base_model: Path | str, **keys: object) -> Path:
    (tmp_path / "rows.jsonl").write_text('{"instruction": "Say hi.", "output": "hi"}\n')
    config = {"base_model": str(base_model), "datasets": [{"path": str(tmp_path / "rows.jsonl")}], **keys}
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def model_folder(tmp_path: Path, name: str = "model", **config: object) -> Path:
    """A folder that passes for a saved model as far as the offline checks look (never loaded)."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", **config}))
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def custom_code_folder(source: Path, target: Path, model_type: str, marker: Path) -> Path:
    """A copy of a real model folder whose config.json names custom code that would leave `marker`."""
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(
        json.dumps({**config, "model_type": model_type, "auto_map": CUSTOM_CODE})
    )
    run = f"open({str(marker)!r}, 'w').write('ran')\n"
    (target / "configuration_tiny.py").write_text(
        run
        + "from transformers import LlamaConfig\n\nclass TinyConfig(LlamaConfig):\n    model_type = 'tiny_custom'\n"
    )
    (target / "modeling_tiny.py").write_text(
        run
        + "from transformers import LlamaForCausalLM\n\nclass TinyForCausalLM(LlamaForCausalLM):\n    pass\n"
    )
    return target


# ---------------------------------------------------------------------------------------------
# YAML


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system ['touch {marker}']",
        "!!python/object/new:os.system ['touch {marker}']",
        "!!python/name:os.system",
        "!!python/module:os",
    ],
)
def test_python_tags_are_refused_and_never_run(tmp_path: Path, tag: str) -> None:
    marker = tmp_path / "ran"
    config = tmp_path / "c.yml"
    config.write_text(f"base_model: org/model\noutput_dir: {tag.format(marker=marker)}\n")
    found = problems(config)
    assert found == [
        f"line 2, column 13: the tag {tag.split()[0]!r} is not allowed: "
        "ft reads plain YAML and never builds Python objects"
    ]
    assert not marker.exists()


def test_python_tag_in_a_set_override_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    config = write_config(tmp_path, "org/model")
    override = f"output_dir=!!python/object/apply:os.system ['touch {marker}']"
    assert problems(config, (override,)) == [
        f"--set {override}: line 1, column 1: the tag '!!python/object/apply:os.system' is not allowed: "
        "ft reads plain YAML and never builds Python objects"
    ]
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# trust_remote_code


def test_trust_remote_code_is_off_unless_the_config_says_true(tmp_path: Path) -> None:
    cfg, _ = read_config(write_config(tmp_path, "org/model"))
    assert cfg.trust_remote_code is False
    assert FtConfig(base_model="m", datasets=[{"path": "d"}]).trust_remote_code is False


def test_validate_says_when_a_local_model_needs_its_own_code(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, model_type="tiny_custom", auto_map=CUSTOM_CODE)
    assert problems(write_config(tmp_path, folder)) == [
        f"base_model: '{folder}' needs its own Python code (modeling_tiny.TinyForCausalLM, from config.json "
        "auto_map) and trust_remote_code is false: ft runs no code from a model unless told "
        "(set trust_remote_code: true if you trust it)"
    ]
    cfg, _ = read_config(write_config(tmp_path, folder, trust_remote_code=True))
    assert cfg.trust_remote_code is True


def test_custom_code_of_a_model_type_transformers_knows_is_not_needed(tmp_path: Path) -> None:
    # e.g. a local copy of Phi-3: config.json has auto_map, but transformers has its own phi3 classes.
    folder = model_folder(tmp_path, model_type="phi3", auto_map=CUSTOM_CODE)
    cfg, _ = read_config(write_config(tmp_path, folder))
    assert cfg.trust_remote_code is False


def test_validate_reads_a_cached_hub_models_config_for_custom_code(tmp_path: Path) -> None:
    """Nothing is downloaded: a Hub model already in the cache (HF_HUB_CACHE) has its config.json read."""
    snapshot = tmp_path / "hub" / "models--org--custom" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "tiny_custom", "auto_map": CUSTOM_CODE}))
    (tmp_path / "hub" / "models--org--custom" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--custom" / "refs" / "main").write_text("0123abcd")
    (tmp_path / "refused").mkdir()
    (tmp_path / "allowed").mkdir()
    refused = write_config(tmp_path / "refused", "org/custom")
    allowed = write_config(tmp_path / "allowed", "org/custom", trust_remote_code=True)
    code = (
        "import sys\nfrom ft.cli.app import main\n"
        "for config in sys.argv[1:]:\n"
        "    try:\n        main(['validate', config])\n    except SystemExit as exit_:\n"
        "        print('exit', exit_.code, file=sys.stderr)\n"
        "    else:\n        print('exit 0', file=sys.stderr)\n"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(refused), str(allowed)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        "  base_model: 'org/custom' (in the local Hugging Face cache) needs its own Python code"
        in proc.stderr
    )
    assert proc.stderr.count("exit 2") == 1 and "exit 0" in proc.stderr, proc.stderr


@pytest.mark.integration
def test_loading_refuses_custom_code_without_running_it(tiny_model_dir: Path, tmp_path: Path) -> None:
    from ft.models.loading import load_base_model

    marker = tmp_path / "ran"
    folder = custom_code_folder(tiny_model_dir, tmp_path / "custom", "tiny_custom", marker)
    # load_base_model does not rely on ft validate having run (a saved config is reloaded unchecked).
    with pytest.raises(ModelLoadError, match=r"needs its own Python code .* trust_remote_code is false"):
        load_base_model(FtConfig(base_model=str(folder), datasets=[{"path": "d"}]), None, CPU)
    assert not marker.exists()


@pytest.mark.integration
def test_known_model_type_loads_the_builtin_class_without_running_custom_code(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from ft.models.loading import load_base_model

    marker = tmp_path / "ran"
    folder = custom_code_folder(tiny_model_dir, tmp_path / "known", "llama", marker)
    model = load_base_model(FtConfig(base_model=str(folder), datasets=[{"path": "d"}]), None, CPU)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# pickle weights


def test_pickle_only_model_folder_needs_the_opt_in(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"never read by the check")
    assert problems(write_config(tmp_path, folder)) == [
        f"base_model: '{folder}' holds only pickle weights (pytorch_model.bin) and pickle files can run code "
        "when loaded: convert them to safetensors, or set allow_pickle_weights: true if you trust their source"
    ]
    cfg, _ = read_config(write_config(tmp_path, folder, allow_pickle_weights=True))
    assert cfg.allow_pickle_weights is True


def test_safetensors_beside_pickle_weights_need_no_opt_in(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    (folder / "pytorch_model.bin").write_bytes(b"")
    read_config(write_config(tmp_path, folder))


def test_pickle_only_adapter_needs_the_opt_in(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.bin").write_bytes(b"")
    keys = {"adapter": "lora", "lora_target_linear": True, "lora_model_dir": str(adapter)}
    assert problems(write_config(tmp_path, "org/model", **keys)) == [
        f"lora_model_dir: '{adapter}' holds only pickle weights (adapter_model.bin) and pickle files can run "
        "code when loaded: convert them to safetensors, or set allow_pickle_weights: true if you trust their source"
    ]
    read_config(write_config(tmp_path, "org/model", allow_pickle_weights=True, **keys))


@pytest.mark.integration
def test_pickle_only_weights_load_only_with_the_opt_in(tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from ft.models.loading import load_base_model

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    cfg = FtConfig(base_model=str(folder), datasets=[{"path": "d"}])
    with pytest.raises(ModelLoadError, match="holds only pickle weights"):
        load_base_model(cfg, None, CPU)
    loaded = load_base_model(cfg.model_copy(update={"allow_pickle_weights": True}), None, CPU)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(loaded.state_dict()[name], model.state_dict()[name])
