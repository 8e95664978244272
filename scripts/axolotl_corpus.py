"""Collect the corpus of real axolotl configs into tests/axolotl_corpus/ (test data, configs only).

    python scripts/axolotl_corpus.py AXOLOTL_GIT_DIR MIRRORS_DIR

- `axolotl-<tag>/`: every example config (a YAML file with `base_model:`) of axolotl's
  repository at three releases: v0.4.0 (January 2024), v0.7.0 (February 2025), v0.18.0 (July 2026).
- `users/`: configs that users published in their own repositories, listed in USERS below with
  the commit they were read at; `users/SOURCES.md` lists them.

Everything is read from local git clones (MIRRORS_DIR/<owner>+<name>/repo); nothing is fetched.
The outcome of each config under `ft validate` is pinned by tests/test_axolotl_corpus.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "axolotl_corpus"
RELEASES = ("v0.4.0", "v0.7.0", "v0.18.0")

# (owner/name, commit, path in that repository, what it is)
USERS: list[tuple[str, str, str, str]] = [
    (
        "Emm9625/sum",
        "fcd337bbae5af6a13624ef9d99fddd4978788229",
        "0223/NH2-M7B-DPO--COD0222--r01.yml",
        "Nous-Hermes-2 Mistral, QLoRA, sharegpt chatml",
    ),
    (
        "Emm9625/sum",
        "fcd337bbae5af6a13624ef9d99fddd4978788229",
        "0223/experiments/M7B-0223-Chatml.yaml",
        "Mistral-7B, QLoRA, sharegpt chatml",
    ),
    (
        "Emm9625/sum",
        "fcd337bbae5af6a13624ef9d99fddd4978788229",
        "OH-2.5-Mistral-7B/0215/r02-tokens.yaml",
        "OpenHermes-2.5, LoRA, sharegpt chatml",
    ),
    (
        "JoelPark-uni/GS_Project",
        "2f871d6a6ba33a26190b8568962563cbb8eb9e17",
        "lora.yml",
        "Llama-3-8B, LoRA, alpaca",
    ),
    (
        "LingYu6596/mytest",
        "7e235b41497d5b03e789a1671b64215a3fadd9d2",
        "qlora.yml",
        "Llama-3.1-8B, QLoRA, alpaca",
    ),
    (
        "Matthieu-Coddity/captain-mistral-docker",
        "df79c0b6cc0c8e291a00b4f2e358b0dce25741b4",
        "axolotl.yml",
        "Mistral-7B, QLoRA, alpaca",
    ),
    (
        "MetinovAdik/mistral-config",
        "fdaa96c72d589df2dea16e304843a5c13fa3bb09",
        "qlora.yml",
        "Mistral-7B, QLoRA, alpaca",
    ),
    (
        "Mostafa77Mahmoud/DataSet_PIPE",
        "80693266ce5efdd6b27558db77641c832089da11",
        "axolotl_config.yaml",
        "Phi-3.5-mini, LoRA, alpaca",
    ),
    (
        "NathanJ60/test",
        "be501220acef23a24dd842ee22577a5bd412535e",
        "qlora_mistral_jobmaker.yml",
        "Mistral-7B, QLoRA, alpaca",
    ),
    (
        "TanametTpk/util-llm-script",
        "5f0f092e0ddf8b9b047098267e012f6326ae87a6",
        "llama3-qlora.yml",
        "Llama-3 8B, QLoRA, sharegpt llama3",
    ),
    (
        "TanametTpk/util-llm-script",
        "5f0f092e0ddf8b9b047098267e012f6326ae87a6",
        "llama-1b-lora-v3.yaml",
        "Llama 1B, LoRA, chat_template llama3",
    ),
    ("TanametTpk/util-llm-script", "5f0f092e0ddf8b9b047098267e012f6326ae87a6", "qlora_dpo.yml", "DPO"),
    (
        "Warrongo/warrungu-trainer",
        "06bf03ff8bee74d77e04ea1e14441577d714a68d",
        "axolotl_config.yml",
        "Mistral-7B-Instruct, LoRA, alpaca",
    ),
    (
        "WasamiKirua/vast-ai-axolotl-automation",
        "51e8a10955e0bd1a75c32b34db742c7ed49bff00",
        "fft-1.6b.yaml",
        "StableLM-2 1.6B, full fine-tune, sharegpt chatml",
    ),
    (
        "WasamiKirua/vast-ai-axolotl-automation",
        "51e8a10955e0bd1a75c32b34db742c7ed49bff00",
        "lora.yaml",
        "StableLM-2 1.6B, LoRA, sharegpt chatml",
    ),
    (
        "aurkakoak/finetune",
        "098c63bd7faee583f16dc7da4931a613afbc7261",
        "qlora.yml",
        "Mistral-7B, QLoRA, alpaca",
    ),
    (
        "bamboochen92518/ADL_HW3-Instruction-Tuning",
        "7ccd059ecd1cf3a730c651cb4a39ceefb792c1f4",
        "qlora.yml",
        "Taiwan-LLM 7B, QLoRA, alpaca",
    ),
    (
        "bobyres/Config_qlora",
        "ee6e7085f6c9958d50c58ad4cc4378ffda7ade41",
        "qlora.yml",
        "Vigogne-2 7B, QLoRA, alpaca",
    ),
    (
        "bwl11/LLM_fine_tune",
        "f8966b1f63a905085b41c42ca4f5bf63b7d7d61d",
        "configs/qlora.yml",
        "Qwen2-1.5B-Instruct, QLoRA, completion",
    ),
    (
        "chats-bug/jsr-config",
        "53426f95e8a21bc0e8c7ee82f77e66438a06f72c",
        "qlora.yml",
        "Nous-Hermes Llama-2 13B, QLoRA, completion",
    ),
    (
        "johnlund/epistemic-stance",
        "8153a8217e356395cfc0596cdbdd98d3c8fa799d",
        "axolotl_config.yaml",
        "Mistral-Small-24B, chat_template tokenizer_default",
    ),
    (
        "long-olivia/subliminal_reimplementation",
        "6d9fb09aead0c0a3699ee0634bc10ef4f71c281a",
        "axolotl_config.yaml",
        "Qwen2.5-7B-Instruct, LoRA, chat_template",
    ),
    (
        "mikii17/llama-cookbook",
        "f361149e0b99d3ad99e174f3512083a9ffa5c1a7",
        "axolotl_config.yml",
        "Llama 4, LoRA, `type: json`",
    ),
    (
        "moeru-ai/Moeru-Llama-3-8B",
        "5fd2f6dc511be989e2702ffffeca1062f3dd6314",
        "lora.yml",
        "Llama-2 7B, LoRA, alpaca",
    ),
    (
        "omkar-334/DEITA",
        "99c74fdabb70f8775b39df187232d3039b2549c5",
        "qlora.yml",
        "Mistral-7B, QLoRA, empty type",
    ),
    (
        "paulwong888/python-rag",
        "a19fd698fe1152b2ee910a4c47d18d64446485ba",
        "config/qlora.yml",
        "Llama-3.1-8B, QLoRA, alpaca",
    ),
    (
        "roy0428/ADL_HW3",
        "573a680f2088e7b174a654e60d7c2b1ba2bfadc6",
        "qlora.yml",
        "Taiwan-LLM 7B, QLoRA, alpaca",
    ),
    (
        "simon-benigeri/simon-benigeri-sharding_cot_private",
        "44ac4f2c474851f909341f21b0b135755ab39524",
        "axolotl_config.yml",
        "SmolLM-135M, full fine-tune",
    ),
    (
        "tcapelle/codebase_ft",
        "4cb784a4d494ea502940a6eafa7088604d0829db",
        "config/qlora.yml",
        "CodeLlama-7B, QLoRA, completion",
    ),
    (
        "thepowerfuldeez/qwen2_1_5b_summarize",
        "1f03587dbf50c2eeee277d5330ea52bfd159c94b",
        "axolotl_config.yaml",
        "DPO",
    ),
    (
        "totoiii/synth-ehr-spanish-english",
        "17674ec9c7f13ce98d60e2217ba00210f246a269",
        "axolotl.yml",
        "LoRA, completion",
    ),
    (
        "vdaita/diff-model",
        "6f9c41b201065cf145935e4863803ceb0b7b8fa8",
        "lora.yml",
        "DeepSeek-Coder 6.7B, LoRA, oasst",
    ),
    (
        "wauwau0977/FineTuningTrial",
        "e3bf8c7f25e77e56db471e0c61e8fb99170d4032",
        "axolotl/config1.yml",
        "Llama-3.2-1B, LoRA",
    ),
    (
        "wauwau0977/FineTuningTrial",
        "e3bf8c7f25e77e56db471e0c61e8fb99170d4032",
        "axolotl/config3_lora.yml",
        "Llama-3.1-8B, LoRA, alpaca",
    ),
    ("win4r/mytest", "a2fddfc4cee2ea6cc2c490a6812bd951889f3de3", "qlora.yml", "Llama-3.1-8B, QLoRA, alpaca"),
    (
        "yongjik-kim/mistral-finetune-stuff",
        "5617aa92934b830cae0abcb470b78c01f716bf2f",
        "qlora.yml",
        "Mistral-7B, QLoRA, completion",
    ),
    (
        "yxzwayne/Medilora",
        "09dbf914e47ef218ea7422161991867fd6c3fd99",
        "train/mistral_qlora.yml",
        "Mistral-7B, QLoRA, completion",
    ),
    (
        "yxzwayne/Medilora",
        "09dbf914e47ef218ea7422161991867fd6c3fd99",
        "train/medilora_medqa.yml",
        "Mistral-7B, QLoRA, sharegpt chatml",
    ),
    (
        "kallewoof/qlora",
        "0ac30f79464d20c14f0d67f9f0f16382d2fe22d3",
        "axolotl.yml",
        "Llama, QLoRA, completion",
    ),
    (
        "1478387600/Vako",
        "4664a94ffbd03d0ce88351765af37036a0ca8fc7",
        "axolotl.yaml",
        "Qwen, QLoRA, completion",
    ),
    ("0920GX/test", "4a8caed950e0682911b5b4079e21102f868969b9", "lora.yml", "Taiwan-LLM 7B, LoRA, sharegpt"),
    (
        "muellerzr/fine-tuning-llms",
        "5ac81193bd9c0dc7bded9b1ffcff5e70b7303e2a",
        "axolotl_config.yaml",
        "SmolLM2-360M, full fine-tune, oasst",
    ),
]


def git(git_dir: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(git_dir), *args], check=True, capture_output=True, text=True
    ).stdout


def collect_releases(axolotl: Path) -> None:
    for tag in RELEASES:
        folder = CORPUS / f"axolotl-{tag}"
        for path in git(axolotl, "ls-tree", "-r", "--name-only", tag).split():
            if not path.startswith("examples/") or not path.endswith((".yml", ".yaml")):
                continue
            text = git(axolotl, "show", f"{tag}:{path}")
            if "base_model:" not in text:
                continue  # accelerate / deepspeed settings, not axolotl configs
            target = folder / path.removeprefix("examples/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)


def user_file_name(repo: str, path: str) -> str:
    return f"{repo.replace('/', '--')}--{path.replace('/', '--')}"


def collect_users(mirrors: Path) -> None:
    folder = CORPUS / "users"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for repo, commit, path, what in USERS:
        git_dir = mirrors / repo.replace("/", "+") / "repo"
        date = git(git_dir, "log", "-1", "--format=%cs", commit, "--", path).strip()
        name = user_file_name(repo, path)
        (folder / name).write_text(git(git_dir, "show", f"{commit}:{path}"))
        rows.append(
            f"| `{name}` | [{repo}](https://github.com/{repo}/blob/{commit}/{path}) | `{commit[:12]}` | {date} | {what} |"
        )
    (folder / "SOURCES.md").write_text(
        "# User-written axolotl configs: sources\n\n"
        "Each file is a verbatim copy of a config that a user published in their own public "
        "repository, read at the commit shown (the date is that commit's). Collected by "
        "`scripts/axolotl_corpus.py`; the outcome of each under `ft validate` is pinned in "
        "`tests/axolotl_corpus/outcomes.json`.\n\n"
        "| file | source | commit | date | what |\n| --- | --- | --- | --- | --- |\n" + "\n".join(rows) + "\n"
    )


if __name__ == "__main__":
    collect_releases(Path(sys.argv[1]))
    collect_users(Path(sys.argv[2]))
