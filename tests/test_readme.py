"""The README documents every setting: each FASHION_* variable appears there (the settings table)."""

from __future__ import annotations

from search.settings import EmbedderSettings, Settings
from tests.helpers import REPO_ROOT


def test_every_setting_is_in_the_readme() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    variables = [f"FASHION_{name.upper()}" for name in Settings.model_fields if name != "embedder"]
    # The table lists the embedder's fields as `FASHION_EMBEDDER__DEVICE`, `__THREADS`, ...
    nested = [f"__{name.upper()}" for name in EmbedderSettings.model_fields]
    missing = [variable for variable in variables + nested if variable not in readme]
    assert not missing, f"README.md does not document {missing}"
