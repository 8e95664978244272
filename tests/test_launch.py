"""What ft train says or refuses under an FSDP / DeepSpeed launch (ft.train.launch), from the
environment accelerate launch sets and the run config's keys; every shipped configs/accelerate file
parsed by accelerate's own launcher and passed through those checks. No weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from ft.base.errors import FtError
from ft.config.schema import FtConfig
from ft.train.launch import check_launch

FSDP_ENV = {"ACCELERATE_USE_FSDP": "true", "FSDP_STATE_DICT_TYPE": "FULL_STATE_DICT", "WORLD_SIZE": "2"}


def config(**keys: object) -> FtConfig:
    return FtConfig(base_model="m", datasets=[{"path": "d.jsonl", "type": "alpaca"}], **keys)


def test_fsdp_on_a_cpu_is_said_to_run_as_ddp() -> None:
    assert check_launch(config(), use_cpu=True, env=FSDP_ENV) == [
        "FSDP asked for, but accelerate shards only on GPUs: on this machine without CUDA the 2 "
        "process(es) train data-parallel (DDP over gloo), each holding the whole model"
    ]


def test_deepspeed_on_a_cpu_is_said_to_run_as_ddp() -> None:
    env = {"ACCELERATE_USE_DEEPSPEED": "true", "WORLD_SIZE": "2"}
    assert check_launch(config(), use_cpu=True, env=env)[0].startswith("DeepSpeed asked for, but accelerate")
    assert check_launch(config(deepspeed="ds.json"), use_cpu=True, env={})[0].startswith("DeepSpeed asked")


def test_on_a_gpu_or_without_sharding_nothing_is_said() -> None:
    assert check_launch(config(), use_cpu=False, env=FSDP_ENV) == []
    assert check_launch(config(), use_cpu=True, env={"WORLD_SIZE": "2"}) == []


@pytest.mark.parametrize(
    ("keys", "env"),
    [
        ({}, {**FSDP_ENV, "FSDP_STATE_DICT_TYPE": "SHARDED_STATE_DICT"}),
        ({"fsdp": ["full_shard"], "fsdp_config": {"fsdp_state_dict_type": "sharded_state_dict"}}, {}),
        ({"fsdp": ["full_shard"], "fsdp_config": {"state_dict_type": "SHARDED_STATE_DICT"}}, {}),
        # An accelerate config that names no type: accelerate's FSDP2 plugin defaults to the sharded one.
        ({}, {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}),
    ],
)
def test_sharded_state_dict_is_refused_on_any_machine(keys: dict, env: dict) -> None:
    for use_cpu in (True, False):
        with pytest.raises(FtError) as caught:
            check_launch(config(**keys), use_cpu=use_cpu, env=env)
        assert caught.value.message.startswith(
            "fsdp_state_dict_type: SHARDED_STATE_DICT: transformers' Trainer"
        )
        assert "FULL_STATE_DICT" in (caught.value.hint or "")


def test_full_state_dict_by_default_where_the_trainer_gathers() -> None:
    # FSDP1's default, and transformers' default for the run config's fsdp keys.
    assert (
        check_launch(config(), use_cpu=False, env={"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"}) == []
    )
    assert check_launch(config(fsdp=["full_shard"]), use_cpu=False, env={}) == []


ACCELERATE_CONFIGS = sorted(
    (Path(__file__).resolve().parent.parent / "configs" / "accelerate").glob("*.yaml")
)


def launch_env(config_file: Path) -> dict[str, str]:
    """The variables `accelerate launch --config_file FILE` gives the processes it starts."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(config_file), "train.py"])
    args, _, _ = _validate_launch_command(args)
    return prepare_multi_gpu_env(args)


@pytest.mark.parametrize("config_file", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_shipped_accelerate_configs_launch_and_pass_ft_train_checks(config_file: Path) -> None:
    env = launch_env(config_file)
    assert check_launch(config(), use_cpu=False, env=env) == []
    if "fsdp" in config_file.name:
        assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"


def test_an_fsdp2_accelerate_config_naming_no_state_dict_type_is_refused(tmp_path: Path) -> None:
    shipped = (Path(__file__).resolve().parent.parent / "configs" / "accelerate" / "fsdp.yaml").read_text()
    edited = tmp_path / "fsdp.yaml"
    edited.write_text(
        "".join(line for line in shipped.splitlines(True) if "fsdp_state_dict_type" not in line)
    )
    with pytest.raises(FtError, match="SHARDED_STATE_DICT"):
        check_launch(config(), use_cpu=False, env=launch_env(edited))
