from pathlib import Path

import pytest

from common import config

REPO = Path(__file__).resolve().parents[2]


def load(tmp_path: Path, overlay: str | None, env: dict | None = None) -> config.Config:
    env = {"ORACLE_HOME": str(tmp_path), **(env or {})}
    ov = None
    if overlay is not None:
        ov = tmp_path / "overlay.yaml"
        ov.write_text(overlay)
    return config.load(REPO / "config" / "default.yaml", ov, env=env)


def test_default_config_is_valid_and_paths_resolve_against_home(tmp_path):
    cfg = load(tmp_path, None)
    assert cfg.endpoint("executor", "rep") == f"ipc://{tmp_path}/var/run/executor.rep"
    assert cfg.path(cfg.preditor.models_dir) == tmp_path / "models"
    assert cfg.orchestrator.heartbeat_timeout_s == 5.0


def test_overlay_deep_merges(tmp_path):
    cfg = load(tmp_path, "orchestrator:\n  restart_limit: 7\n")
    assert cfg.orchestrator.restart_limit == 7
    assert cfg.orchestrator.heartbeat_timeout_s == 5.0  # sibling keys kept


@pytest.mark.parametrize(
    "overlay, env, expected",
    [
        ("paper:\n  initial_balance: ${BAL}\n", {"BAL": "2500"}, 2500.0),
        ("paper:\n  initial_balance: ${BAL:1234}\n", {}, 1234.0),
        ("paper:\n  initial_balance: ${BAL:1234}\n", {"BAL": "99"}, 99.0),
    ],
)
def test_env_expansion(tmp_path, overlay, env, expected):
    assert load(tmp_path, overlay, env).paper.initial_balance == expected


@pytest.mark.parametrize(
    "overlay, message",
    [
        ("paper:\n  initial_balance: ${BAL}\n", "paper.initial_balance: environment variable BAL is not set"),
        ("paper:\n  initial_balanse: 3\n", "paper.initial_balanse: unknown key"),
        ("paper:\n  initial_balance: -3\n", "paper.initial_balance: Input should be greater than 0"),
        ("orchestrator:\n  restart_limit: many\n", "orchestrator.restart_limit: Input should be a valid integer"),
        ("broker:\n  type: mt5\n", "broker.type: Input should be 'sim' or 'ctrader'"),
        ("endpoints:\n  executor: {rep: 'tcp://10.1.2.3:5000'}\n", "not on loopback"),
        ("endpoints:\n  executor: {rep: 'udp://x'}\n", "unsupported endpoint scheme"),
        ("run_dir: /" + "x" * 120 + "\n", "ipc path is"),
        ("paper: [1, 2\n", "invalid YAML"),
        ("- 1\n- 2\n", "the top level must be a map"),
    ],
)
def test_errors_name_the_key(tmp_path, overlay, message):
    with pytest.raises(config.ConfigError) as exc:
        load(tmp_path, overlay)
    assert message in str(exc.value)


def test_unset_variable_is_never_left_as_literal_text(tmp_path):
    with pytest.raises(config.ConfigError, match=r"NOPE is not set"):
        load(tmp_path, "persistence:\n  sqlite_path: ${NOPE}/db\n")


def test_yaml_error_gives_the_line(tmp_path):
    with pytest.raises(config.ConfigError, match=r"overlay.yaml: line 2 column 12: invalid YAML"):
        load(tmp_path, "paper:\n  enabled: : true\n  x: 1\n")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(config.ConfigError, match="cannot read config file"):
        config.load(tmp_path / "nope.yaml", env={"ORACLE_HOME": str(tmp_path)})


def test_loopback_tcp_endpoint_is_allowed(tmp_path):
    cfg = load(tmp_path, "endpoints:\n  executor: {rep: 'tcp://127.0.0.1:5999'}\n")
    assert cfg.endpoint("executor", "rep") == "tcp://127.0.0.1:5999"
    assert cfg.endpoint("executor", "pub").startswith("ipc://")


# ---- an overlay that replaces a map; every error at once; one way to select the files ----------------------------


def test_overlay_replace_mark_drops_the_base_entries(tmp_path):
    merged = load(tmp_path, "connector:\n  symbols: {XAUUSD: M15}\n")
    assert dict(merged.connector.symbols) == {"EURUSD": "H1", "XAUUSD": "M15"}  # a plain key merges
    replaced = load(tmp_path, "connector:\n  symbols!: {XAUUSD: M15}\n")
    assert dict(replaced.connector.symbols) == {"XAUUSD": "M15"}  # the ! replaces: EURUSD is gone
    assert replaced.connector.account_interval_s == 5.0  # only the marked map is replaced, not its section


@pytest.mark.parametrize(
    "overlay, message",
    [
        ("connector:\n  symbols!: [XAUUSD]\n",
         "connector.symbols!: the replace mark is for a map, and this value is a list"),
        ("connector:\n  symbols: {A: H1}\n  symbols!: {B: H1}\n", "connector.symbols!: symbols is given both"),
        ("paper:\n  extra: {inner!: {a: 1}}\n",
         "paper.extra.inner!: a replace mark (!) is only meaningful in an overlay"),
        ("connector:\n  symbols!: {XAUUSD: M99}\n", "connector.symbols.XAUUSD"),  # then validated as usual
    ],
)
def test_overlay_replace_mark_misuse_is_an_error_naming_the_key(tmp_path, overlay, message):
    with pytest.raises(config.ConfigError) as exc:
        load(tmp_path, overlay)
    assert message in str(exc.value)
    assert str(exc.value).startswith("invalid configuration (")


def test_a_replace_mark_in_the_base_file_is_an_error(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text((REPO / "config" / "default.yaml").read_text() + "\nwire!: {curve: true}\n")
    with pytest.raises(config.ConfigError, match=r"wire!: a replace mark \(!\) is only meaningful in an overlay"):
        config.load(base, None, env={"ORACLE_HOME": str(tmp_path)})


def test_every_error_is_reported_at_once(tmp_path):
    with pytest.raises(config.ConfigError) as exc:
        load(tmp_path, "paper:\n  initial_balance: ${NOPE_A}\n  state_file: ${NOPE_B}\norchestrator:\n"
                       "  restart_limit: many\n")
    lines = str(exc.value).splitlines()
    assert lines[0].startswith("invalid configuration (") and len(lines) == 4
    assert any("NOPE_A is not set" in line for line in lines) and any("NOPE_B is not set" in line for line in lines)
    assert any("orchestrator.restart_limit" in line for line in lines)


def test_oracle_config_selects_the_base_file_and_an_argument_wins(tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text((REPO / "config" / "default.yaml").read_text().replace("run_dir: var/run", "run_dir: var/other"))
    env = {"ORACLE_HOME": str(tmp_path), "ORACLE_CONFIG": str(other)}
    assert config.select(env=env) == (other, None)
    assert config.load(env=env).run_dir == "var/other"
    assert config.load(REPO / "config" / "default.yaml", env=env).run_dir == "var/run"


def test_an_unset_variable_is_said_once_not_again_as_the_invalid_value_it_left(tmp_path):
    with pytest.raises(config.ConfigError) as exc:
        load(tmp_path, "connector:\n  symbols: {EURUSD: '${NOPE_TF}'}\n")
    assert str(exc.value).splitlines()[1:] == [
        "  connector.symbols.EURUSD: environment variable NOPE_TF is not set (write ${NOPE_TF:default} for a default)"]
