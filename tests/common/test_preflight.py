"""What the configuration needs from the environment (common/preflight.py): every problem at once, by program."""

from pathlib import Path

from common import config, preflight

REPO = Path(__file__).resolve().parents[2]
CREDS = {"CTRADER_CLIENT_ID": "id", "CTRADER_CLIENT_SECRET": "s", "CTRADER_ACCESS_TOKEN": "t",
         "CTRADER_ACCOUNT_ID": "123"}


def cfg_with(tmp_path: Path, overlay: str) -> config.Config:
    path = tmp_path / "overlay.yaml"
    path.write_text(overlay)
    return config.load(REPO / "config" / "default.yaml", path, env={"ORACLE_HOME": str(tmp_path)})


def test_the_simulator_needs_nothing_from_the_environment(tmp_path):
    assert preflight.problems(cfg_with(tmp_path, "{}"), {}) == []


def test_ctrader_without_credentials_names_every_missing_variable(tmp_path):
    cfg = cfg_with(tmp_path, "broker: {type: ctrader}\n")
    found = preflight.problems(cfg, {"CTRADER_CLIENT_ID": "id"})
    assert [p.service for p in found] == ["connector"]
    assert "CTRADER_CLIENT_SECRET, CTRADER_ACCESS_TOKEN, CTRADER_ACCOUNT_ID not set" in found[0].message
    assert "CTRADER_CLIENT_ID" not in found[0].message
    assert preflight.problems(cfg, CREDS) == []
    bad_account = preflight.problems(cfg, {**CREDS, "CTRADER_ACCOUNT_ID": "login42"})
    assert [p.message for p in bad_account] == [
        "CTRADER_ACCOUNT_ID must be the numeric ctidTraderAccountId (not the login)"]


def test_sinks_need_their_settings_and_each_program_gets_only_its_own(tmp_path):
    cfg = cfg_with(tmp_path, "broker: {type: ctrader}\npersistence:\n  sinks:\n    supabase: {enabled: true}\n"
                             "    postgres: {enabled: true, dsn: ''}\n")
    found = preflight.problems(cfg, {"SUPABASE_URL": "https://x.supabase.co"})
    assert [(p.service, p.key) for p in found] == [
        ("connector", "broker.type"), ("persistence", "persistence.sinks.supabase"),
        ("persistence", "persistence.sinks.postgres.dsn")]
    assert "environment variable SUPABASE_KEY not set" in found[1].message
    assert [p.key for p in preflight.problems(cfg, {}, "persistence")] == [
        "persistence.sinks.supabase", "persistence.sinks.postgres.dsn"]
    assert preflight.problems(cfg, {}, "preditor-1") == []  # a shard is of its kind: nothing here for the preditor
    assert preflight.cause(preflight.problems(cfg, {}, "connector")).startswith(
        "broker.type: ctrader needs the credentials: environment variables CTRADER_CLIENT_ID, ")
