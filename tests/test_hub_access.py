"""Reaching the Hub when there is none: one quick probe, the local cache, a fast message with the
`hf download` commands (ft.config.hub). No test touches the network: an unreachable Hub is a port
nobody listens on, or one that accepts and never answers."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ft.base.errors import FtError
from ft.config.hub import HubRef, hub_refs, is_cached, prepare_hub_access, probe_url
from ft.config.load import load_config

REPO = Path(__file__).resolve().parent.parent
HUB_CONFIGS = ["llama2-qlora", "phi2-qlora", "phi3-qlora", "mistral-qlora", "gpt2-lora"]


def shipped(name: str):
    return load_config(REPO / "configs" / f"{name}.yml")


def fake_snapshot(home: Path, repo_id: str, files: list[str], repo_type: str = "model") -> Path:
    commit = "1" * 40
    repo = home / "hub" / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in files:
        (snapshot / name).write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_refs_of_a_config_by_what_the_command_reads() -> None:
    cfg = shipped("phi3-qlora")
    train = hub_refs(cfg, ("weights", "data"))
    assert [(r.key, r.repo_id, r.need) for r in train] == [
        ("base_model", "microsoft/Phi-3-mini-4k-instruct", "weights"),
        ("datasets[0].path", "HuggingFaceH4/ultrachat_200k", "data"),
        ("test_datasets[0].path", "HuggingFaceH4/ultrachat_200k", "data"),
    ]
    assert [r.need for r in hub_refs(cfg, ("config",))] == ["config"]
    assert [r.need for r in hub_refs(cfg, ("tokenizer", "data"))] == ["tokenizer", "data", "data"]
    assert hub_refs(load_config(REPO / "configs" / "quickstart.yml"), ("weights", "data")) == []


def test_download_commands() -> None:
    assert HubRef("base_model", "org/m", "weights").download_command() == "hf download org/m"
    assert HubRef("base_model", "org/m", "config", "v2").download_command() == (
        "hf download org/m config.json --revision v2"
    )
    assert HubRef("d", "org/d", "data").download_command() == "hf download --repo-type dataset org/d"
    assert "--include" in HubRef("base_model", "org/m", "tokenizer").download_command()


def test_cache_lookup_by_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    fake_snapshot(tmp_path, "org/m", ["config.json", "tokenizer.json"])
    assert is_cached(HubRef("base_model", "org/m", "config"))
    assert is_cached(HubRef("base_model", "org/m", "tokenizer"))
    assert not is_cached(HubRef("base_model", "org/m", "weights"))  # no weights file
    assert not is_cached(HubRef("base_model", "org/m", "config", revision="v2"))
    assert not is_cached(HubRef("d", "org/d", "data"))
    (tmp_path / "datasets" / "org___d").mkdir(parents=True)  # datasets' own Arrow cache
    assert is_cached(HubRef("d", "org/d", "data"))


def test_probe_gives_up_on_a_hub_that_never_answers() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        began = time.monotonic()
        why = probe_url(f"http://127.0.0.1:{server.getsockname()[1]}", 0.5)
        assert time.monotonic() - began < 2
    assert why is not None and "within 0.5 s" in why


def test_unreachable_hub_and_empty_cache_is_one_error_listing_every_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(FtError) as caught:
        prepare_hub_access(shipped("llama2-qlora"), ("weights", "data"))
    err = caught.value
    assert "cannot be reached (ConnectionRefusedError" in err.message
    assert "base_model: NousResearch/Llama-2-7b-chat-hf" in err.message
    assert "datasets[0].path: mlabonne/guanaco-llama2-1k" in err.message
    assert err.hint is not None and "hf download --repo-type dataset mlabonne/guanaco-llama2-1k" in err.hint
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # the libraries imported later stay off the network

    # Everything cached: the run goes on offline, with a note.
    fake_snapshot(tmp_path, "NousResearch/Llama-2-7b-chat-hf", ["config.json", "model.safetensors"])
    fake_snapshot(tmp_path, "mlabonne/guanaco-llama2-1k", ["data.parquet"], "dataset")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    [note] = prepare_hub_access(shipped("llama2-qlora"), ("weights", "data"))
    assert "using the local cache (HF_HUB_OFFLINE=1)" in note


@pytest.mark.parametrize("command", ["format", "train"])
def test_shipped_hub_config_fails_within_5_s_without_a_network(command: str, tmp_path: Path) -> None:
    """The issue's measure, through the real command line: no HF_HUB_OFFLINE, no network, an empty
    cache. (ft plan: test_plan.py; every shipped config and command: bench/offline.py.)"""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "http://127.0.0.1:9"}
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_CACHE"):
        env.pop(name, None)
    config = REPO / "configs" / "llama2-qlora.yml"
    began = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "ft", command, str(config)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    seconds = time.monotonic() - began
    assert out.returncode == 2, out.stderr
    assert "hf download NousResearch/Llama-2-7b-chat-hf" in out.stderr and "Traceback" not in out.stderr
    assert seconds < 5, seconds
    assert not (tmp_path / "outputs").exists()  # ft train stopped before it claimed output_dir


class _AnswerEverything(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def test_a_run_to_push_keeps_the_hub_on_or_stops_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hub_model_id with a local model and data: Hub access stays on when the Hub answers (the
    push at the end needs it), and an unreachable Hub stops the run before it trains."""
    cfg = load_config(REPO / "configs" / "quickstart.yml").model_copy(update={"hub_model_id": "me/dates"})
    assert [(r.key, r.need) for r in hub_refs(cfg, ("weights", "data", "upload"))] == [
        ("hub_model_id", "upload")
    ]
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        monkeypatch.delenv(name, raising=False)
    server = http.server.HTTPServer(("127.0.0.1", 0), _AnswerEverything)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        assert prepare_hub_access(cfg, ("weights", "data", "upload")) == []
        assert "HF_HUB_OFFLINE" not in os.environ
    finally:
        server.shutdown()
        server.server_close()
    # ft eval of the same config pushes nothing: Hub access goes off.
    assert "Hub access is off" in prepare_hub_access(cfg, ("weights", "data"))[0]
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    with pytest.raises(FtError) as caught:
        prepare_hub_access(cfg, ("weights", "data", "upload"))
    assert caught.value.message == (
        "hub_model_id: HF_HUB_OFFLINE is set, so the run could not be pushed to me/dates when it ends"
    )
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(FtError) as caught:
        prepare_hub_access(cfg, ("weights", "data", "upload"))
    assert caught.value.message.startswith(
        "hub_model_id: the Hugging Face Hub (http://127.0.0.1:9) cannot be reached"
    )
    assert caught.value.hint is not None and "ft push RUN_DIR me/dates" in caught.value.hint
    assert "HF_HUB_OFFLINE" not in os.environ  # a push is never switched off
