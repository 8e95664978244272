"""The config: a YAML file read, translated from axolotl's keys, checked and typed.

Owns the schema (`schema`, one pydantic model per section), reading YAML (`yaml_reader`), loading
and overrides (`load`), pydantic's errors in ft's words (`messages`), offline checks of the paths a
config names (`checks`), where a named model comes from (`sources`), reaching the Hugging Face Hub
or its local cache, decided before the Hugging Face libraries load (`hub`), the prompt-format names
and custom-format rules the schema checks (`formats`), axolotl's keys across releases and what ft
does with each (`axolotl_keys.json`, `axolotl_table`, `axolotl`: the translation, `explain`), and
the generated references (`docs`, `axolotl_docs`).

May import: `ft.base`. Imports no stage: it is what every stage reads.
"""
