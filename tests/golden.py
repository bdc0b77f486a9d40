"""The official golden cases in ../shared/reference: every `golden_<X>/case<X>_<stage>.npz` found, with the weight
seed its metadata names. Golden tests run once per case holding their stage, so further cases computed the same way
are checked by dropping them in."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


@dataclass(frozen=True)
class GoldenCase:
    name: str  # "A", "B", ...
    folder: Path

    def path(self, stage: str) -> Path:
        return self.folder / f"case{self.name}_{stage}.npz"

    def has(self, stage: str) -> bool:
        return self.path(stage).is_file()

    def load(self, stage: str) -> dict[str, np.ndarray]:
        with np.load(self.path(stage)) as data:
            return {key: data[key] for key in data.files}

    @property
    def seed(self) -> int:
        """The synthetic-weight seed of this case (every stage file records it)."""
        stage_file = next(iter(sorted(self.folder.glob(f"case{self.name}_*.npz"))))
        with np.load(stage_file) as data:
            return int(json.loads(str(data["meta_json"]))["seed"])


def golden_cases() -> list[GoldenCase]:
    return [GoldenCase(folder.name.removeprefix("golden_"), folder)
            for folder in sorted(REFERENCE.glob("golden_*")) if folder.is_dir()]


def cases_with(*stages: str) -> list:
    """pytest parameters: the cases holding every one of ``stages``; none is an error (the module fails to collect)."""
    found = [pytest.param(c, id=f"case{c.name}") for c in golden_cases() if all(c.has(s) for s in stages)]
    if not found:
        raise FileNotFoundError(f"no golden case with stages {stages} under {REFERENCE}")
    return found
