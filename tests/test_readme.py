"""The README names only things that exist, and documents every ``[insights]`` setting."""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path

README = (Path(__file__).resolve().parent.parent / "README.md").read_text("utf-8")
#: dotted references into the package's modules (event field names such as mcplens.status are not)
_REF = re.compile(r"\bmcplens\.(?:analysis|privacy|capture|exporters|store|safetext|alerts|cli)(?:\.[A-Za-z_]\w*)+")


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_every_module_reference_in_the_readme_exists() -> None:
    refs = sorted(set(_REF.findall(README)))
    assert "mcplens.privacy.injection.make_processor" in refs
    missing = []
    for ref in refs:
        try:
            _resolve(ref)
        except (ImportError, AttributeError):
            missing.append(ref)
    assert missing == []


def test_every_insights_setting_is_documented() -> None:
    from mcplens.analysis.core import Thresholds

    section = README[README.index("**`[insights]` settings.**"):]
    section = section[: section.index("`[insights.tools]`")]
    documented = set(re.findall(r"`([a-z0-9_]+)`", section))
    assert {f.name for f in dataclasses.fields(Thresholds)} - documented == set()
