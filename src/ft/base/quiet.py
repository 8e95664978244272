"""Library chatter that ft's commands replace with their own output. Called by command bodies
(the CLI owns the terminal), never on import."""

from __future__ import annotations


def quiet_libraries() -> None:
    """Silence weight-loading and dataset-saving bars, a deprecation warning peft triggers in transformers 5,
    bitsandbytes' note about an optional CPU kernel package, and peft's note that a soft prompt ignores
    position ids (generate passes them; the positions then count the soft prompt, as in training)."""
    import logging
    import warnings

    from datasets.utils import logging as datasets_logging
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    datasets_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Position ids are not supported for parameter efficient tuning")
