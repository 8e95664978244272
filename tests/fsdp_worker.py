"""FSDP2 on CPU ranks: ft's model, sharded by accelerate's own FSDP2 code, trained and gathered.

    accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 2 --mixed_precision no \\
        tests/fsdp_worker.py OUT CONFIG...

For each config, the model is built as `ft train` builds it (tokenizer, prepared rows, base model
loaded with ft's precision and quantization, ft's adapter), then sharded with
`accelerate.utils.fsdp_utils.fsdp2_prepare_model` under the FSDP plugin that `accelerate launch`
built from the config file's settings (FSDP_* variables): the code a GPU launch runs, one
`fully_shard` group per decoder layer, embeddings and tail in groups of their own. It trains a few
steps of a fixed global batch split across the ranks, gathers the weights as
`Accelerator.get_state_dict` does for FSDP2 (a full state dict on rank 0), and saves them as
transformers' Trainer does (`save_pretrained(..., state_dict=...)`). Rank 0 writes
OUT/NAME/losses.json, numel.json (parameter values held by rank 0 against the model's) and the
saved model.

Why not `ft train` itself: accelerate 1.15 never selects FSDP without CUDA (a CPU run gets a
MULTI_CPU state, and only GPU-like device types become FSDP in accelerate/state.py), so under the
same launch `ft train` trains as DDP. And why a stand-in for the Accelerator: its state refuses the
FSDP plugin on a CPU; fsdp2_prepare_model reads only the plugin, the mixed precision, the device and
whether this is the main process from it.

`train(config, out, shard=False)` in one process, without sharding, is the reference run.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

IGNORE = -100


def build(config: Path) -> tuple[Any, Any, list[dict[str, Any]]]:
    """Model (with its adapter), tokenizer and prepared rows, as ft.train.runner builds them."""
    from transformers import set_seed

    from ft.config.load import read_config
    from ft.data.pipeline import prepare_data
    from ft.models.adapter import attach_adapter
    from ft.models.loading import load_model_from_path, resolve_base_model_path
    from ft.models.precision import resolve_precision
    from ft.models.tokenizer import load_tokenizer

    cfg, _ = read_config(config)
    tokenizer = load_tokenizer(cfg)
    data = prepare_data(cfg, tokenizer, use_cache=False)
    set_seed(cfg.seed)
    model = load_model_from_path(cfg, resolve_base_model_path(cfg), tokenizer, resolve_precision(cfg))
    rows = [data.train[i] for i in range(len(data.train))]
    return attach_adapter(cfg, model).model, tokenizer, rows


def shard(model: Any, rank: int) -> Any:
    import torch
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_model

    plugin = FullyShardedDataParallelPlugin()  # from the FSDP_* variables accelerate launch sets
    accelerator = types.SimpleNamespace(
        state=types.SimpleNamespace(fsdp_plugin=plugin),
        mixed_precision="no",
        is_main_process=rank == 0,
        device=torch.device("cpu"),
        torch_device_mesh=None,
        parallelism_config=None,
    )
    return fsdp2_prepare_model(accelerator, model)


def padded(rows: list[dict[str, Any]], length: int, pad_id: int) -> dict[str, Any]:
    import torch

    def fill(values: list[int], value: int) -> list[int]:
        return values + [value] * (length - len(values))

    return {
        "input_ids": torch.tensor([fill(r["input_ids"], pad_id) for r in rows]),
        "attention_mask": torch.tensor([fill([1] * len(r["input_ids"]), 0) for r in rows]),
        "labels": torch.tensor([fill(r["labels"], IGNORE) for r in rows]),
    }


def token_loss_sum(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """Summed next-token loss over the trained tokens, and their count."""
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    targets = batch["labels"][:, 1:]
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )
    return loss, int((targets != IGNORE).sum())


def train(
    config: Path, out: Path, *, sharded: bool, steps: int = 4, global_batch: int = 4, lr: float = 0.01
) -> list[float]:
    """Mean loss per step over the global batch (every rank's trained tokens together)."""
    import torch
    import torch.distributed as dist

    rank, world = (dist.get_rank(), dist.get_world_size()) if sharded else (0, 1)
    model, tokenizer, rows = build(config)
    if sharded:
        model = shard(model, rank)
    # Training mode: in eval mode bitsandbytes repacks 4-bit weights in place on AVX512-BF16 CPUs,
    # behind FSDP's back (the sharded copy goes stale).
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    share = global_batch // world
    losses = []
    for step in range(steps):
        batch = [rows[(step * global_batch + i) % len(rows)] for i in range(global_batch)]
        length = max(len(r["input_ids"]) for r in batch)
        local = padded(batch[rank * share : (rank + 1) * share], length, tokenizer.pad_token_id)
        loss_sum, count = token_loss_sum(model, local)
        totals = torch.tensor([float(loss_sum.detach()), float(count)])
        if sharded:
            dist.all_reduce(totals)
        # FSDP averages gradients over the ranks: times `world`, each rank's share of the global mean.
        (loss_sum / totals[1] * world).backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(totals[0] / totals[1]))
    state_dict = gathered_state_dict(model) if sharded else model.state_dict()
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(out), state_dict=state_dict)
        (out / "losses.json").write_text(json.dumps(losses))
        (out / "numel.json").write_text(json.dumps(held_numel(model)))
    return losses


def held_numel(model: Any) -> dict[str, int]:
    """Parameter values this rank holds, against the model's: about 1/world under FSDP."""
    from torch.distributed.tensor import DTensor

    def local(p: Any) -> int:
        return p.to_local().numel() if isinstance(p, DTensor) else p.numel()

    params = list(model.parameters())
    return {"held": sum(local(p) for p in params), "model": sum(p.numel() for p in params)}


def gathered_state_dict(model: Any) -> dict[str, Any]:
    """What `Accelerator.get_state_dict` returns for FSDP2: the full tensors, on rank 0's CPU."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)


def main(out: Path, configs: list[Path]) -> None:
    import torch.distributed as dist
    from accelerate import PartialState

    PartialState(cpu=True)  # the gloo process group of the launch
    for config in configs:
        train(config, out / config.stem, sharded=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(arg) for arg in sys.argv[2:]])
