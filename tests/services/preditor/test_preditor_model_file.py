import io
import json
import logging
import os
import pickle
import zipfile

import pytest
import torch

from services.preditor.model_file import (
    BadHmmParams,
    BadMetadataJson,
    BadPolicyWeights,
    CorruptZip,
    InvalidMetadata,
    MissingComment,
    MissingMember,
    ModelFileError,
    ObservationSizeMismatch,
    UnknownDecodeMethod,
    UnsupportedFormatVersion,
    UntrustedLegacyModel,
    build_model_bytes,
    load_model,
    load_models,
)


def zip_bytes(members: dict[str, bytes], comment: bytes | None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if comment is not None:
            zf.comment = comment
    return out.getvalue()


def weights_bytes(state) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


@pytest.fixture
def good(metadata, hmm5, policy_state):
    return {"EURUSD_H1_hmm.json": json.dumps(hmm5.to_dict()).encode(),
            "EURUSD_H1_policy.pt": weights_bytes(policy_state())}


def write(tmp_path, data: bytes, name="EURUSD_H1.zip"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_valid_model_loads(tmp_path, metadata, hmm5, policy_state, eurusd_bars):
    path = write(tmp_path, build_model_bytes(metadata, hmm5, policy_state()))
    model = load_model(path)
    assert (model.symbol, model.timeframe, model.legacy) == ("EURUSD", "H1", False)
    assert model.spec.observation_size == 14 and model.spec.window == 350
    assert model.spec.decode_method == "forward_filter" and len(model.model_id) == 16
    assert model.policy_fn(torch.zeros(14).numpy()) in range(7)
    # the same bytes give the same model id; the file is reproducible
    assert build_model_bytes(metadata, hmm5, policy_state()) == path.read_bytes()


def test_hmm_parameters_may_be_npz_without_pickle(tmp_path, metadata, hmm5, good):
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, startprob=hmm5.startprob, transmat=hmm5.transmat, means=hmm5.means, covars=hmm5.covars)
    members = {"EURUSD_H1_hmm.npz": buf.getvalue(), "EURUSD_H1_policy.pt": good["EURUSD_H1_policy.pt"]}
    model = load_model(write(tmp_path, zip_bytes(members, meta_bytes(metadata))))
    assert np.array_equal(model.spec.hmm.covars, hmm5.covars)
    objects = io.BytesIO()
    np.savez(objects, startprob=np.array([object()], dtype=object))
    members["EURUSD_H1_hmm.npz"] = objects.getvalue()
    with pytest.raises(BadHmmParams, match="EURUSD_H1_hmm.npz"):
        load_model(write(tmp_path, zip_bytes(members, meta_bytes(metadata))))


def meta_bytes(metadata, **changes):
    return json.dumps({**metadata, **changes}).encode()


BROKEN = {
    "corrupt zip": (lambda m, g: b"PK\x03\x04 this is not a zip", CorruptZip, "not a readable zip"),
    "truncated zip": (lambda m, g: zip_bytes(g, meta_bytes(m))[:200], CorruptZip, "zip"),
    "no comment": (lambda m, g: zip_bytes(g, None), MissingComment, "no comment"),
    "bad json": (lambda m, g: zip_bytes(g, b"{format_version: 2.0"), BadMetadataJson, "not valid JSON"),
    "json not an object": (lambda m, g: zip_bytes(g, b"[1, 2]"), BadMetadataJson, "not an object"),
    "wrong format_version": (lambda m, g: zip_bytes(g, meta_bytes(m, format_version="1.0")),
                             UnsupportedFormatVersion, "format_version '1.0'"),
    "missing key": (lambda m, g: zip_bytes(g, json.dumps({k: v for k, v in m.items() if k != "training_config"})
                                           .encode()), InvalidMetadata, "training_config"),
    "bad value": (lambda m, g: zip_bytes(g, meta_bytes(m, hmm_config={**m["hmm_config"], "n_states": 0})),
                  InvalidMetadata, "hmm_config.n_states"),
    "other action table": (lambda m, g: zip_bytes(g, meta_bytes(m, actions={**m["actions"], "4": {
        "name": "SHORT_WEAK", "direction": 1, "intensity": 1}})), InvalidMetadata, "action 4"),
    "eight actions": (lambda m, g: zip_bytes(g, meta_bytes(m, actions={**m["actions"], "7": {}})),
                      InvalidMetadata, "8 actions"),
    "no decode method": (lambda m, g: zip_bytes(g, meta_bytes(m, hmm_config={**m["hmm_config"],
                                                                             "decode_method": None})),
                         InvalidMetadata, "decode_method"),
    "unknown decode method": (lambda m, g: zip_bytes(g, meta_bytes(m, hmm_config={**m["hmm_config"],
                                                                                  "decode_method": "viterbi"})),
                              UnknownDecodeMethod, "'viterbi' is unknown"),
    "missing policy": (lambda m, g: zip_bytes({k: v for k, v in g.items() if "policy" not in k}, meta_bytes(m)),
                       MissingMember, "EURUSD_H1_policy.pt"),
    "missing hmm": (lambda m, g: zip_bytes({k: v for k, v in g.items() if "hmm" not in k}, meta_bytes(m)),
                    MissingMember, "EURUSD_H1_hmm.json"),
    "members of another symbol": (lambda m, g: zip_bytes(g, meta_bytes(m, symbol={"name": "GBPUSD",
                                                                                  "timeframe": "H1"})),
                                  MissingMember, "GBPUSD_H1"),
    "hmm json garbage": (lambda m, g: zip_bytes({**g, "EURUSD_H1_hmm.json": b"\xff\x00"}, meta_bytes(m)),
                         BadHmmParams, "EURUSD_H1_hmm.json"),
    "hmm with other state count": (lambda m, g: zip_bytes(g, meta_bytes(m, hmm_config={**m["hmm_config"],
                                                                                       "n_states": 4})),
                                   BadHmmParams, "metadata says 4 states"),
    "policy not a tensor dict": (lambda m, g: zip_bytes({**g, "EURUSD_H1_policy.pt": weights_bytes([1, 2])},
                                                        meta_bytes(m)), BadPolicyWeights, "dict of tensors"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_each_broken_model_has_its_own_error(tmp_path, metadata, good, case):
    build, error, reason = BROKEN[case]
    path = write(tmp_path, build(metadata, good))
    with pytest.raises(error or ModelFileError, match=reason) as info:
        load_model(path)
    assert str(info.value).startswith("EURUSD_H1.zip: ")


def test_observation_size_not_matching_the_policy(tmp_path, metadata, hmm5, policy_state):
    path = write(tmp_path, build_model_bytes(metadata, hmm5, policy_state(observation_size=13)))
    with pytest.raises(ObservationSizeMismatch, match="policy takes 13 inputs but the observation has 14"):
        load_model(path)


class Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (self.target,)


def test_policy_weights_never_unpickle_code(tmp_path, metadata, good):
    target = str(tmp_path / "pwned")
    evil = pickle.dumps({"hidden.0.weight": Exploit(target)}, protocol=2)
    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w") as zf:  # a torch.save-like archive whose data.pkl runs os.mkdir
        zf.writestr("archive/data.pkl", evil)
        zf.writestr("archive/version", "3\n")
    path = write(tmp_path, zip_bytes({**good, "EURUSD_H1_policy.pt": payload.getvalue()}, meta_bytes(metadata)))
    with pytest.raises(BadPolicyWeights, match="EURUSD_H1_policy.pt"):
        load_model(path)
    assert not os.path.exists(target)
    pickle.loads(evil)  # the payload is live: plain unpickling would have run it
    assert os.path.exists(target)


def legacy_zip(metadata, hmm_pickle: bytes, ppo_zip: bytes) -> bytes:
    meta = {**metadata, "hmm_config": {k: v for k, v in metadata["hmm_config"].items() if k != "decode_method"}}
    return zip_bytes({"EURUSD_H1_hmm.pkl": hmm_pickle, "EURUSD_H1_ppo.zip": ppo_zip}, json.dumps(meta).encode())


def test_legacy_pickle_layout_needs_trust(tmp_path, metadata):
    target = str(tmp_path / "pwned")
    path = write(tmp_path, legacy_zip(metadata, pickle.dumps(Exploit(target)), b"PK"))
    with pytest.raises(UntrustedLegacyModel, match="mark this model trusted"):
        load_model(path)
    assert not os.path.exists(target)
    with pytest.raises(BadHmmParams):  # trusted: the pickle runs (and is not an HMM)
        load_model(path, trusted=True)
    assert os.path.exists(target)


def test_trusted_legacy_model_loads_with_a_warning_and_acts_like_sb3(tmp_path, metadata, caplog):
    import numpy as np
    from hmmlearn.hmm import GaussianHMM
    from stable_baselines3 import PPO

    from services.preditor.env import MarketTape, TwinEnv

    rng = np.random.default_rng(0)
    hmm = GaussianHMM(5, covariance_type="diag", n_iter=5, random_state=0).fit(rng.normal(size=(300, 3)))
    from common.twin.hmm import HmmParams
    from common.twin.twin import TwinSpec

    spec = TwinSpec(HmmParams(np.full(5, 0.2), np.full((5, 5), 0.2), np.zeros((5, 3)), np.stack([np.eye(3)] * 5)),
                    "single_observation")
    tape = MarketTape(np.zeros((4, 6)), np.zeros(4, dtype=int), np.arange(4), np.ones(4))
    ppo = PPO("MlpPolicy", TwinEnv(spec, tape), n_steps=8, batch_size=8, seed=1, device="cpu",
              policy_kwargs={"net_arch": {"pi": [8], "vf": [8]}})
    ppo_buf = io.BytesIO()
    ppo.save(ppo_buf)
    path = write(tmp_path, legacy_zip(metadata, pickle.dumps({"model": hmm}), ppo_buf.getvalue()))
    with caplog.at_level(logging.WARNING):
        model = load_model(path, trusted=True)
    assert model.legacy and "TRUSTED legacy" in caplog.text
    assert model.spec.decode_method == "single_observation"  # what the reference did live
    assert np.allclose(model.spec.hmm.means, hmm.means_) and model.spec.hmm.covars.shape == (5, 3, 3)
    obs = rng.normal(size=(50, 14)).astype(np.float32)
    assert [model.policy_fn(o) for o in obs] == [int(ppo.predict(o, deterministic=True)[0]) for o in obs]


def test_load_models_keeps_loading_the_others(tmp_path, metadata, hmm5, policy_state, good):
    write(tmp_path, build_model_bytes(metadata, hmm5, policy_state()), "EURUSD_H1.zip")
    write(tmp_path, b"garbage", "BROKEN_M1.zip")
    write(tmp_path, legacy_zip(metadata, b"x", b"y"), "LEGACY_H4.zip")
    write(tmp_path, zip_bytes(good, None), "NOCOMMENT_M5.zip")
    (tmp_path / "notes.txt").write_text("ignored")
    models, errors = load_models(tmp_path)
    assert [m.path.name for m in models] == ["EURUSD_H1.zip"]
    assert sorted(type(e).__name__ for e in errors) == ["CorruptZip", "MissingComment", "UntrustedLegacyModel"]
    assert sorted(e.path.name for e in errors) == ["BROKEN_M1.zip", "LEGACY_H4.zip", "NOCOMMENT_M5.zip"]
    # trusting the legacy file by name lets it try to load; its pickle is garbage, so it is refused anyway
    _, errors = load_models(tmp_path, trusted_names={"LEGACY_H4"})
    assert "BadHmmParams" in {type(e).__name__ for e in errors}
