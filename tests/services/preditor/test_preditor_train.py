from pathlib import Path

import numpy as np
import pytest
import torch

from services.preditor import train
from services.preditor.model_file import load_model


@pytest.fixture
def small_csv(tmp_path):
    lines = Path("data/EURUSD_H1_2017.csv").read_text(encoding="utf-8").splitlines()[:1401]
    path = tmp_path / "bars.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def smoke(csv, out):
    return train.main(["--data", str(csv), "--symbol", "EURUSD", "--timeframe", "H1", "--out", str(out),
                       "--timesteps", "256", "--n-steps", "128", "--batch-size", "64", "--n-epochs", "2",
                       "--net", "16,16", "--evals", "2", "--hmm-iter", "10", "--episode-bars", "200",
                       "--seed", "7"])


def test_training_writes_a_loadable_reproducible_model(tmp_path, small_csv, capsys):
    assert smoke(small_csv, tmp_path / "a" / "EURUSD_H1.zip") == 0
    assert smoke(small_csv, tmp_path / "b" / "EURUSD_H1.zip") == 0
    torch.set_num_threads(1)  # main() set --threads (1); keep the session's setting explicit
    assert "[train] 256/256 steps" in capsys.readouterr().err  # progress goes to stderr
    a, b = load_model(tmp_path / "a" / "EURUSD_H1.zip"), load_model(tmp_path / "b" / "EURUSD_H1.zip")
    meta = a.metadata
    assert meta.format_version == "2.0" and meta.hmm_config.decode_method == "forward_filter"
    assert meta.data_info["train_bars"] == 980 and meta.data_info["test_bars"] == 210
    assert meta.training_config.model_extra["seed"] == 7
    assert meta.backtest_oos["bars"] == 210  # the OOS replay decides exactly the test bars
    assert {"training_config", "hmm_config", "rl_config", "actions", "backtest_oos", "data_info",
            "generated_at", "format_version", "twin"} <= set(meta.model_dump())
    for key, value in a.policy.state_dict().items():
        assert torch.equal(value, b.policy.state_dict()[key])
    assert np.array_equal(a.spec.hmm.transmat, b.spec.hmm.transmat)
    assert a.metadata.backtest_oos == b.metadata.backtest_oos


def test_too_few_bars_is_an_error(tmp_path):
    path = tmp_path / "bars.csv"
    lines = Path("data/EURUSD_H1_2017.csv").read_text(encoding="utf-8").splitlines()[:300]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert train.main(["--data", str(path), "--symbol", "X", "--timeframe", "H1", "--out", str(tmp_path / "x.zip"),
                       "--timesteps", "10"]) == 2
