"""Preference tuning's names: the `rl` methods ft trains, those it refuses, and axolotl's pair
dataset types (what their fields are called), for the schema and the axolotl key translation."""

from __future__ import annotations

RL_METHODS = ("dpo", "ipo", "orpo")
"""dpo and ipo: trl's DPOTrainer (loss sigmoid or ipo) against a reference model; orpo: trl's
ORPOTrainer, which needs no reference."""

RL_REFUSED = {
    "kto": "KTO (unpaired good/bad labels)",
    "simpo": "SimPO (trl 1.16 has it only in its experimental CPO trainer, not as a DPO loss)",
    "cpo": "CPO",
    "grpo": "GRPO (online RL with reward functions)",
    "gdpo": "GDPO (online RL with reward functions)",
    "ppo": "PPO (online RL with a reward model)",
    "rloo": "RLOO (online RL with reward functions)",
    "online_dpo": "online DPO (generation during training)",
    "ebft": "energy-based fine-tuning",
}
"""`rl` values of axolotl's that ft does not train, with the feature's name for the message."""

RL_METHODS_TEXT = "dpo, ipo or orpo"

PAIR_TYPE_FIELDS: dict[str, dict[str, str]] = {
    "intel": {"field_system": "system", "field_prompt": "question"},
    "argilla": {
        "field_prompt": "instruction",
        "field_chosen": "chosen_response",
        "field_rejected": "rejected_response",
    },
    "prompt_pairs": {},
    "ultra": {},
    "argilla_chat": {},
}
"""axolotl's DPO dataset types `chatml.X` / `llama3.X` by their field layout (axolotl's
prompt_strategies/dpo): the columns that hold the system prompt, the prompt and the two answers
where they are not ft's defaults (system, prompt, chosen, rejected). In `ultra` and
`argilla_chat` the answers are conversations whose shared beginning is the prompt."""

PAIR_TEMPLATES = ("chatml", "llama3")


def pair_type_fields(kind: str) -> dict[str, str] | None:
    """The field defaults of an axolotl pair type (`chatml.intel`, `chat_template.default`), or None."""
    if kind == "chat_template.default":
        return {}
    template, _, layout = kind.partition(".")
    if template in PAIR_TEMPLATES and layout in PAIR_TYPE_FIELDS:
        return PAIR_TYPE_FIELDS[layout]
    return None
