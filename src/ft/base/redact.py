"""Secrets: recognising keys that hold them, and keeping their values out of what ft shows or saves.

ft reads secrets (HF_TOKEN, WANDB_API_KEY, ...) only from the environment; the schema has no field
for one. A secret-looking key in a config file is therefore refused by name, its value never shown,
and `redact` is the last guard for anything printed or saved from a config mapping.
"""

from __future__ import annotations

import re
from typing import Any

SECRET_KEY = re.compile(
    r"(^|_)(token|secret|password|passwd|api_?key|access_?key|auth|credentials?)($|_)", re.IGNORECASE
)
"""`hf_token`, `wandb_api_key`, `db_password`, `hub_token`; not `tokens`, `tokenizer_config`."""

VOCABULARY_KEYS = frozenset({"special_tokens"})
"""Mappings whose `*_token` keys are vocabulary (`pad_token: <pad>`), never secrets."""

VOCABULARY_KEY = re.compile(r"^(bos|eos|pad|unk|sep|cls|mask|eot)_token(_id|_str)?$")
"""`bos_token: <s>`, `mask_token_id: 3`: names of vocabulary entries, never secrets."""

REDACTED = "***"

ENVIRONMENT_HINT = {
    "hub": "HF_TOKEN",
    "hf": "HF_TOKEN",
    "huggingface": "HF_TOKEN",
    "wandb": "WANDB_API_KEY",
}


def is_secret_key(key: str) -> bool:
    return bool(SECRET_KEY.search(key)) and not VOCABULARY_KEY.match(key)


def secret_key_hint(key: str) -> str:
    """The fix for a secret written into a config file: where ft reads it from instead."""
    prefix = key.lower().split("_", 1)[0]
    variable = ENVIRONMENT_HINT.get(prefix)
    where = f"set {variable} in the environment" if variable else "pass it through the environment"
    return f"{where} and remove the key from the file (config files get shared; ft never reads secrets from them)"


def redact(value: Any, key: str = "") -> Any:
    """`value` with the values of secret-looking keys replaced by `***`, at any depth."""
    if isinstance(value, dict):
        if key in VOCABULARY_KEYS:
            return dict(value)
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if (
        is_secret_key(key)
        and isinstance(value, (str, int, float))
        and not isinstance(value, bool)
        and value != ""
    ):
        return REDACTED
    return value
