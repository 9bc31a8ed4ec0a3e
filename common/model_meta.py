"""What paper and the executor need from a model file without loading it: symbol, timeframe and the training
cost model, read from the metadata JSON in the zip comment (the model file format of services/preditor/model_file.py).

Pure except `read_models`, which lists and opens the files. No torch: these processes never load a policy.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.twin.actions import TRAINING_LOT_SIZES
from common.twin.position import CostModel


class ModelMetaError(ValueError):
    pass


@dataclass(frozen=True)
class ModelMeta:
    symbol: str
    timeframe: str
    costs: CostModel
    file: str = ""


def parse_meta(raw: Mapping[str, Any], file: str = "") -> ModelMeta:
    """Metadata JSON -> ModelMeta; errors name the field."""
    try:
        sym = raw["symbol"]
        tc = raw["training_config"]
        costs = CostModel(
            point=float(tc["point"]), pip_value=float(tc["pip_value"]), spread_points=float(tc["spread_points"]),
            slippage_points=float(tc["slippage_points"]), commission_per_lot=float(tc["commission_per_lot"]),
            digits=int(tc["digits"]), initial_balance=float(tc.get("initial_balance", 10_000.0)),
            lot_sizes=tuple(float(v) for v in tc.get("lot_sizes", TRAINING_LOT_SIZES)))
        return ModelMeta(symbol=str(sym["name"]), timeframe=str(sym["timeframe"]), costs=costs, file=file)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelMetaError(f"{file or 'model'}: bad metadata ({type(exc).__name__}: {exc})") from None


def read_meta(path: str | Path) -> ModelMeta:
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            comment = zf.comment
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelMetaError(f"{path.name}: cannot open ({exc})") from None
    try:
        raw = json.loads(comment.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelMetaError(f"{path.name}: the zip comment is not metadata JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ModelMetaError(f"{path.name}: the metadata JSON is not an object")
    return parse_meta(raw, path.name)


def read_models(directory: str | Path) -> tuple[list[ModelMeta], list[str]]:
    """Every `*.zip` of the models directory (sorted): the readable ones and the errors of the others."""
    metas: list[ModelMeta] = []
    errors: list[str] = []
    for path in sorted(Path(directory).glob("*.zip")):
        try:
            metas.append(read_meta(path))
        except ModelMetaError as exc:
            errors.append(str(exc))
    return metas, errors


LIVE_MODELS = "live_models"  # the load step's argument (executor.load, paper.load): the symbols the preditor loaded


def live_only(metas: list[ModelMeta], step_args: Mapping[str, Any]) -> tuple[list[ModelMeta], list[str]]:
    """The models the preditor loaded, by the step's ``live_models`` (the orchestrator passes the preditor's load
    result: a model it refused is not live), and a line for each one left out. Without the argument (a step asked by
    hand) every readable model counts. A malformed argument is a ValueError naming it."""
    if LIVE_MODELS not in step_args:
        return metas, []
    live = step_args[LIVE_MODELS]
    if not isinstance(live, list | tuple) or not all(isinstance(s, str) for s in live):
        raise ValueError(f"step args {LIVE_MODELS}: a list of symbols, not {live!r}")
    kept = [m for m in metas if m.symbol in live]
    dropped = [f"{m.file or m.symbol}: not loaded by the preditor ({m.symbol} not live)" for m in metas
               if m.symbol not in live]
    return kept, dropped
