"""Model files: the v2.0 zip with JSON metadata in the zip comment, validated, loaded without unpickling.

Layout of ``{SYMBOL}_{TF}.zip`` (SYMBOL and TF come from ``metadata.symbol``, not from the file name):

- ``{SYMBOL}_{TF}_hmm.json`` (or ``.npz``): startprob, transmat, means, covars (full matrices);
- ``{SYMBOL}_{TF}_policy.pt``: the PPO actor weights, a dict of tensors read with ``torch.load(weights_only=True)``;
- the zip comment: the metadata JSON (format_version "2.0", symbol, training_config, hmm_config with the HMM decode
  method, rl_config, actions, twin, backtest_oos, data_info, generated_at).

The reference's legacy layout (``*_hmm.pkl`` + SB3 ``*_ppo.zip``) unpickles, i.e. runs code from the file: it
loads only when the caller passes ``trusted=True``, with a warning.

Every refusal is a ``ModelFileError`` subclass whose message names the file and the reason.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common import durable
from common.model_meta import ModelMetaError, read_meta
from common.twin.actions import N_ACTIONS, TARGETS, TRAINING_LOT_SIZES
from common.twin.features import HmmFeatureParams, RlFeatureParams
from common.twin.hmm import DECODE_METHODS, SINGLE_OBSERVATION, HmmParams
from common.twin.position import CostModel
from common.twin.twin import DEFAULT_WINDOW, TwinSpec
from services.preditor.policy import PolicyNet, actor_state_from_sb3

FORMAT_VERSIONS = ("2.0",)
MAX_COMMENT_BYTES = 65_535
log = logging.getLogger(__name__)


class ModelFileError(Exception):
    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{Path(path).name}: {reason}")
        self.path = Path(path)
        self.reason = reason


class CorruptZip(ModelFileError): ...
class MissingComment(ModelFileError): ...
class BadMetadataJson(ModelFileError): ...
class UnsupportedFormatVersion(ModelFileError): ...
class InvalidMetadata(ModelFileError): ...
class MissingMember(ModelFileError): ...
class BadHmmParams(ModelFileError): ...
class BadPolicyWeights(ModelFileError): ...
class ObservationSizeMismatch(ModelFileError): ...
class UnknownDecodeMethod(ModelFileError): ...
class UntrustedLegacyModel(ModelFileError): ...


# ---- metadata schema -------------------------------------------------------------------------------------

class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class SymbolInfo(_Open):
    name: str = Field(min_length=1)
    clean: str | None = None
    timeframe: str = Field(min_length=1)


class TrainingConfig(_Open):
    point: float = Field(gt=0)
    pip_value: float = Field(gt=0)
    spread_points: float = Field(ge=0)
    slippage_points: float = Field(ge=0)
    commission_per_lot: float = Field(ge=0)
    digits: int = Field(ge=0)
    initial_balance: float = Field(default=10_000.0, gt=0)
    lot_sizes: list[float] = Field(default_factory=lambda: list(TRAINING_LOT_SIZES), min_length=4, max_length=4)


class HmmConfig(_Open):
    n_states: int = Field(ge=1)
    momentum_period: int = Field(default=12, ge=1)
    consistency_period: int = Field(default=12, ge=1)
    range_period: int = Field(default=20, ge=1)
    decode_method: str | None = None


class RlConfig(_Open):
    roc_period: int = Field(default=10, ge=1)
    atr_period: int = Field(default=14, ge=1)
    ema_period: int = Field(default=200, ge=1)
    range_period: int = Field(default=20, ge=1)
    volume_ma_period: int = Field(default=20, ge=1)
    activation: str = "tanh"


class TwinConfig(_Open):
    window: int = Field(default=DEFAULT_WINDOW, ge=2)


class Metadata(_Open):
    format_version: str
    generated_at: str | None = None
    symbol: SymbolInfo
    training_config: TrainingConfig
    hmm_config: HmmConfig
    rl_config: RlConfig
    actions: dict[str, Any]
    twin: TwinConfig | None = None
    preditor: dict[str, Any] | None = None
    backtest_oos: dict[str, Any] | None = None
    data_info: dict[str, Any] | None = None

    @property
    def prefix(self) -> str:
        return f"{self.symbol.name}_{self.symbol.timeframe}"

    @property
    def window(self) -> int:
        if self.twin is not None:
            return self.twin.window
        if self.preditor and "min_bars" in self.preditor:  # the reference's override
            return int(self.preditor["min_bars"])
        return DEFAULT_WINDOW


# ---- the loaded model ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LoadedModel:
    path: Path
    model_id: str  # sha256 of the file, 16 hex digits: ties a twin snapshot to the exact model
    metadata: Metadata
    spec: TwinSpec
    policy: PolicyNet
    legacy: bool = False

    @property
    def symbol(self) -> str:
        return self.metadata.symbol.name

    @property
    def timeframe(self) -> str:
        return self.metadata.symbol.timeframe

    def policy_fn(self, obs: np.ndarray) -> int:
        return self.policy.act(obs)


def twin_spec_of(meta: Metadata, hmm: HmmParams, decode_method: str) -> TwinSpec:
    tc, hc, rc = meta.training_config, meta.hmm_config, meta.rl_config
    costs = CostModel(tc.point, tc.pip_value, tc.spread_points, tc.slippage_points, tc.commission_per_lot,
                      tc.digits, tc.initial_balance, tuple(tc.lot_sizes))
    return TwinSpec(
        hmm=hmm, decode_method=decode_method,
        hmm_features=HmmFeatureParams(hc.momentum_period, hc.consistency_period, hc.range_period),
        rl_features=RlFeatureParams(rc.roc_period, rc.atr_period, rc.ema_period, rc.range_period,
                                    rc.volume_ma_period),
        costs=costs, window=meta.window)


# ---- writing ---------------------------------------------------------------------------------------------

def build_model_bytes(metadata: dict[str, Any], hmm: HmmParams, policy_state: dict[str, torch.Tensor]) -> bytes:
    """The zip file's bytes (pure apart from serialising in memory)."""
    meta = Metadata.model_validate(metadata)
    comment = json.dumps(metadata, sort_keys=True, allow_nan=False).encode("utf-8")
    if len(comment) > MAX_COMMENT_BYTES:
        raise ValueError(f"metadata is {len(comment)} bytes; a zip comment holds at most {MAX_COMMENT_BYTES}")
    weights = io.BytesIO()
    torch.save(policy_state, weights)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in ((f"{meta.prefix}_hmm.json", json.dumps(hmm.to_dict()).encode("utf-8")),
                           (f"{meta.prefix}_policy.pt", weights.getvalue())):
            info = zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0))  # fixed: reproducible bytes
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
        zf.comment = comment
    return out.getvalue()


def write_model(path: str | Path, metadata: dict[str, Any], hmm: HmmParams,
                policy_state: dict[str, torch.Tensor]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = build_model_bytes(metadata, hmm, policy_state)
    durable.write_atomic(path, data)
    return path


# ---- reading ---------------------------------------------------------------------------------------------

def _metadata(path: Path, zf: zipfile.ZipFile) -> Metadata:
    if not zf.comment:
        raise MissingComment(path, "the zip has no comment, so no metadata")
    try:
        raw = json.loads(zf.comment.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadMetadataJson(path, f"the zip comment is not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise BadMetadataJson(path, "the metadata JSON is not an object")
    version = raw.get("format_version")
    if version not in FORMAT_VERSIONS:
        raise UnsupportedFormatVersion(
            path, f"format_version {version!r} is not supported (supported: {', '.join(FORMAT_VERSIONS)})")
    try:
        return Metadata.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidMetadata(path, f"invalid metadata: {problems}") from None


def _check_actions(path: Path, meta: Metadata) -> None:
    """The model's action table must be ours: index -> (direction, intensity); legacy files say ``size``."""
    for action, target in TARGETS.items():
        entry = meta.actions.get(str(int(action)))
        if not isinstance(entry, dict):
            raise InvalidMetadata(path, f"invalid metadata: actions lacks index {int(action)}")
        got = (entry.get("direction"), entry.get("intensity", entry.get("size")))
        if got != (target.direction, target.intensity):
            raise InvalidMetadata(path, f"invalid metadata: action {int(action)} is (direction, intensity) {got}, "
                                        f"this code means {(target.direction, target.intensity)}")
    if len(meta.actions) != N_ACTIONS:
        raise InvalidMetadata(path, f"invalid metadata: {len(meta.actions)} actions, expected {N_ACTIONS}")


def _hmm_params(path: Path, zf: zipfile.ZipFile, member: str) -> HmmParams:
    try:
        data = zf.read(member)
        if member.endswith(".npz"):
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                return HmmParams(*(np.asarray(npz[k], dtype=np.float64)
                                   for k in ("startprob", "transmat", "means", "covars")))
        return HmmParams.from_dict(json.loads(data.decode("utf-8")))
    except (ValueError, KeyError, TypeError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise BadHmmParams(path, f"{member}: bad HMM parameters ({exc})") from None


def _policy(path: Path, zf: zipfile.ZipFile, member: str, activation: str) -> PolicyNet:
    try:
        state = torch.load(io.BytesIO(zf.read(member)), map_location="cpu", weights_only=True)
        return PolicyNet.from_state_dict(state, activation)
    except Exception as exc:  # torch raises many types for a bad or unsafe file; all mean "refuse"
        raise BadPolicyWeights(path, f"{member}: bad policy weights ({type(exc).__name__}: {exc})") from None


def _legacy_parts(path: Path, zf: zipfile.ZipFile, meta: Metadata) -> tuple[HmmParams, PolicyNet]:
    """Unpickle the reference's hmmlearn object and SB3 PPO zip. Runs code from the file: trusted files only."""
    import pickle
    import tempfile

    from stable_baselines3 import PPO

    try:
        hmm_obj = pickle.loads(zf.read(f"{meta.prefix}_hmm.pkl"))  # noqa: S301 - trusted by the caller
        if isinstance(hmm_obj, dict):
            hmm_obj = hmm_obj["model"]
        hmm = hmm_params_from_hmmlearn(hmm_obj)
    except Exception as exc:
        raise BadHmmParams(path, f"legacy HMM pickle does not load ({type(exc).__name__}: {exc})") from None
    try:
        with tempfile.NamedTemporaryFile(suffix=".zip") as tmp:
            tmp.write(zf.read(f"{meta.prefix}_ppo.zip"))
            tmp.flush()
            ppo = PPO.load(tmp.name, device="cpu")
        policy = PolicyNet.from_state_dict(actor_state_from_sb3(ppo.policy.state_dict()))
    except Exception as exc:
        raise BadPolicyWeights(path, f"legacy PPO zip does not load ({type(exc).__name__}: {exc})") from None
    return hmm, policy


def hmm_params_from_hmmlearn(model: Any) -> HmmParams:
    """Full-covariance parameters of a fitted hmmlearn GaussianHMM (``covars_`` is full whatever its type)."""
    return HmmParams(np.asarray(model.startprob_, dtype=np.float64), np.asarray(model.transmat_, dtype=np.float64),
                     np.asarray(model.means_, dtype=np.float64), np.asarray(model.covars_, dtype=np.float64))


def parse_model(path: str | Path, data: bytes, trusted: bool = False) -> LoadedModel:
    """Validate and load a model from the file's bytes; ``path`` only names it in errors."""
    path = Path(path)
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        bad = zf.testzip()
    except Exception as exc:  # BadZipFile, zlib.error, EOFError, ...: all mean a damaged file
        raise CorruptZip(path, f"not a readable zip file ({type(exc).__name__}: {exc})") from None
    if bad is not None:
        raise CorruptZip(path, f"member {bad} fails its CRC check")
    with zf:
        meta = _metadata(path, zf)
        _check_actions(path, meta)
        names = set(zf.namelist())
        p = meta.prefix
        hmm_member = next((m for m in (f"{p}_hmm.json", f"{p}_hmm.npz") if m in names), None)
        legacy = hmm_member is None and f"{p}_policy.pt" not in names and {f"{p}_hmm.pkl", f"{p}_ppo.zip"} <= names
        if legacy:
            if not trusted:
                raise UntrustedLegacyModel(
                    path, "legacy pickle layout (*_hmm.pkl + *_ppo.zip) runs code when loaded; "
                          "mark this model trusted in the config to load it")
            log.warning("%s: loading a TRUSTED legacy pickle model (*_hmm.pkl + *_ppo.zip)", path.name)
            hmm, policy = _legacy_parts(path, zf, meta)
            decode = meta.hmm_config.decode_method or SINGLE_OBSERVATION  # what the reference did live
        else:
            missing = [m for m, ok in ((f"{p}_hmm.json", hmm_member), (f"{p}_policy.pt", f"{p}_policy.pt" in names))
                       if not ok]
            if missing:
                raise MissingMember(path, f"missing member(s) {', '.join(missing)}")
            if meta.hmm_config.decode_method is None:
                raise InvalidMetadata(path, "invalid metadata: hmm_config.decode_method is missing")
            decode = meta.hmm_config.decode_method
            hmm = _hmm_params(path, zf, hmm_member)
            policy = _policy(path, zf, f"{p}_policy.pt", meta.rl_config.activation)
    if decode not in DECODE_METHODS:
        raise UnknownDecodeMethod(path, f"HMM decode method {decode!r} is unknown to this code "
                                        f"(known: {', '.join(DECODE_METHODS)})")
    if hmm.n_states != meta.hmm_config.n_states or hmm.n_features != 3:
        raise BadHmmParams(path, f"HMM has {hmm.n_states} states x {hmm.n_features} features; metadata says "
                                 f"{meta.hmm_config.n_states} states x 3 features")
    try:
        spec = twin_spec_of(meta, hmm, decode)
    except ValueError as exc:
        raise InvalidMetadata(path, f"invalid metadata: {exc}") from None
    if policy.observation_size != spec.observation_size:
        raise ObservationSizeMismatch(
            path, f"policy takes {policy.observation_size} inputs but the observation has {spec.observation_size} "
                  f"(6 market + {spec.n_states} HMM states + 3 position)")
    n_out = policy.action.out_features
    if n_out != N_ACTIONS:
        raise BadPolicyWeights(path, f"policy has {n_out} outputs, expected {N_ACTIONS} actions")
    model_id = hashlib.sha256(data).hexdigest()[:16]
    return LoadedModel(path, model_id, meta, spec, policy, legacy)


def load_model(path: str | Path, trusted: bool = False) -> LoadedModel:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptZip(path, f"cannot read the file ({exc.strerror})") from None
    return parse_model(path, data, trusted)


def load_models(directory: str | Path, trusted_names: Collection[str] = (),
                symbols: Collection[str] | None = None) -> tuple[list[LoadedModel], list[ModelFileError]]:
    """Every ``*.zip`` in ``directory`` (sorted). A bad model is reported in the errors; the others still load.

    ``trusted_names`` holds file names (``EURUSD_M15.zip``) or stems (``EURUSD_M15``) allowed the legacy layout.
    ``symbols``: load only the models of these symbols (a preditor shard's; their metadata read first, without
    loading them); the others are left alone. None: every model.
    """
    models: list[LoadedModel] = []
    errors: list[ModelFileError] = []
    for path in sorted(Path(directory).glob("*.zip")):
        if symbols is not None:
            try:
                symbol = read_meta(path).symbol
            except (ModelMetaError, OSError, zipfile.BadZipFile, ValueError):
                symbol = None  # loaded: load_model says what is wrong with it
            if symbol is not None and symbol not in symbols:
                continue
        try:
            models.append(load_model(path, trusted=path.name in trusted_names or path.stem in trusted_names))
        except ModelFileError as exc:
            log.error("model refused: %s", exc)
            errors.append(exc)
    return models, errors
