import json

import pytest

from services.paper.report import main

PAPER = [
    {"symbol": "EURUSD", "direction": 1, "lot": 0.01, "entry_time": 0, "exit_time": 900, "pnl": 2.0},
    {"symbol": "EURUSD", "direction": -1, "lot": 0.03, "entry_time": 900, "exit_time": 1800, "pnl": -0.5},
]
REAL_CSV = "symbol,direction,lot,entry_time,exit_time,pnl\nEURUSD,1,0.01,,950,1.2\nUSDJPY,-1,0.01,,990,-3\n"


def test_report_writes_table_and_png(tmp_path, capsys):
    (tmp_path / "paper.json").write_text(json.dumps({"trades": PAPER}))
    (tmp_path / "real.csv").write_text(REAL_CSV)
    png = tmp_path / "drift.png"
    code = main(["--paper", str(tmp_path / "paper.json"), "--real", str(tmp_path / "real.csv"),
                 "--png", str(png)])
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].startswith("| EURUSD | 2 | 1 | 1.50 | 1.20 | 0.30 |")
    assert out[3].startswith("| USDJPY | 0 | 1 |")
    assert out[4].startswith("| ALL | 2 | 2 |")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_mixed_file_json_output_and_window(tmp_path, capsys):
    rows = [{**t, "is_paper": True} for t in PAPER] + [
        {"symbol": "EURUSD", "direction": 1, "volume": 0.01, "exit_time": 1000, "pnl": 1.0, "is_paper": False}]
    (tmp_path / "all.json").write_text(json.dumps(rows))
    assert main([str(tmp_path / "all.json"), "--since", "950", "--json", "--no-png"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert [(r["symbol"], r["paper_trades"], r["real_trades"]) for r in table] == [("EURUSD", 1, 1), ("ALL", 1, 1)]


@pytest.mark.parametrize("content,name,message", [
    ("[{\"symbol\": \"EURUSD\"}]", "bad.json", "bad.json row 1"),
    ("{\"rows\": []}", "bad.json", "expected a JSON list"),
    ("{ nope", "bad.json", "bad.json: invalid JSON at line 1 column 3"),
    ("symbol,direction,pnl\nEURUSD,1,2.0\n", "bad.csv", "bad.csv row 1: no column 'exit_time'"),
    ("symbol,direction,exit_time,pnl\nEURUSD,1,950,2.0\nEURUSD,x,960,1\n", "bad.csv", "bad.csv row 2: invalid literal"),
    ("timestamp,symbol,direction,action,pnl\n2017-03-06T18:02:46Z,EURUSD,1,FLIP,1\n", "t.csv",
     "t.csv row 1: action 'FLIP' is not OPEN, CLOSE or PARTIAL_CLOSE"),
    ("timestamp,symbol,direction,action,pnl\nyesterday,EURUSD,1,CLOSE,1\n", "t.csv",
     "t.csv row 1: timestamp 'yesterday' is neither Unix seconds nor an ISO-8601 time"),
])
def test_report_bad_input(tmp_path, capsys, content, name, message):
    (tmp_path / name).write_text(content)
    assert main([str(tmp_path / name), "--no-png"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and err.startswith("oracle report drift: ")


def test_report_without_files_reads_the_store_and_says_when_there_is_none(tmp_path, capsys):
    assert main(["--db", str(tmp_path / "none.db"), "--no-png"]) == 2
    assert capsys.readouterr().err.strip() == (f"oracle report drift: no store at {tmp_path / 'none.db'} (give --db "
                                               "PATH, set $ORACLE_DB, or give trade files)")
    assert main([str(tmp_path / "missing.csv"), "--no-png"]) == 2
    assert capsys.readouterr().err.strip() == f"oracle report drift: {tmp_path / 'missing.csv'}: no such file"


def test_report_splits_price_and_cost(tmp_path, capsys):
    # the real side from the store (net pnl, commission as a positive charge, swap), the paper side as traded
    real = "symbol,direction,lot,exit_time,pnl,commission,swap\nEURUSD,1,0.01,950,8.0,1.4,-0.6\n"
    paper = [{"symbol": "EURUSD", "direction": 1, "lot": 0.01, "exit_time": 900, "gross_pnl": 10.5,
              "commission": 0.7, "pnl": 9.8}]
    (tmp_path / "real.csv").write_text(real)
    (tmp_path / "paper.json").write_text(json.dumps(paper))
    assert main(["--real", str(tmp_path / "real.csv"), "--paper", str(tmp_path / "paper.json"), "--json"]) == 0
    eur = json.loads(capsys.readouterr().out)[0]
    assert eur["real_gross"] == pytest.approx(10.0) and eur["paper_gross"] == pytest.approx(10.5)
    assert eur["pnl_drift"] == pytest.approx(1.8)
    assert (eur["price_drift"], eur["cost_drift"]) == (pytest.approx(0.5), pytest.approx(1.3))
    assert main(["--real", str(tmp_path / "real.csv"), "--paper", str(tmp_path / "paper.json")]) == 0
    assert capsys.readouterr().out.splitlines()[2].startswith("| EURUSD | 1 | 1 | 9.80 | 8.00 | 1.80 | 0.50 | 1.30 |")


def test_drift_reads_the_store_and_every_format_report_trades_writes(tmp_path, capsys):
    """What `oracle report trades` writes (csv, json, its table) gives the drift the store gives: openings skipped,
    a close's timestamp its exit time, its net pnl, commission and swap split into price and cost."""
    import io
    import uuid
    from datetime import UTC, datetime, timedelta

    from services.persistence import report as trades_report
    from services.persistence.store import Store

    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def trade(i: int, action: str, is_paper: bool, pnl: float, symbol: str = "EURUSD") -> dict:
        return {"id": str(uuid.UUID(int=i + 1)), "session_id": "abcd1234", "timestamp": t0 + timedelta(hours=i),
                "symbol": symbol, "direction": 1 if i % 2 else -1, "action": action, "volume": 0.01,
                "entry_price": 1.1, "exit_price": None if action == "OPEN" else 1.101, "pnl": pnl,
                "commission": 0.0 if action == "OPEN" else 0.07, "swap": -0.02 if not is_paper else 0.0,
                "is_paper": is_paper}

    db = tmp_path / "oracle.db"
    with Store.open(db) as store:
        for i, (action, paper, pnl, sym) in enumerate([
                ("OPEN", False, 0.0, "EURUSD"), ("CLOSE", False, 1.5, "EURUSD"), ("CLOSE", True, 2.0, "EURUSD"),
                ("PARTIAL_CLOSE", False, -0.5, "USDJPY"), ("CLOSE", True, -1.0, "USDJPY"),
                ("OPEN", True, 0, "GBPUSD")]):
            store.write("trades", trade(i, action, paper, pnl, sym))

    def drift(*argv: str) -> list[dict]:
        capsys.readouterr()
        assert main([*argv, "--json", "--no-png"]) == 0, capsys.readouterr().err
        return json.loads(capsys.readouterr().out)

    expected = drift("--db", str(db))
    assert [(r["symbol"], r["real_trades"], r["paper_trades"]) for r in expected] == [
        ("EURUSD", 1, 1), ("USDJPY", 1, 1), ("ALL", 2, 2)]
    assert expected[0]["real_pnl"] == pytest.approx(1.5) and expected[0]["real_gross"] == pytest.approx(1.59)
    for fmt in ("csv", "json", "table"):
        out = io.StringIO()
        assert trades_report.main(["trades", "--db", str(db), "--format", fmt, "--limit", "0"], out=out) == 0
        path = tmp_path / f"trades.{fmt if fmt != 'table' else 'txt'}"
        path.write_text(out.getvalue())
        got = drift(str(path))
        if fmt == "table":  # the table view has no swap column: the costs are the commission alone
            assert [(r["symbol"], r["real_pnl"], r["paper_pnl"]) for r in got] == [
                (r["symbol"], r["real_pnl"], r["paper_pnl"]) for r in expected], fmt
        else:
            assert got == expected, fmt


def test_the_plot_goes_where_it_says(tmp_path, capsys, monkeypatch):
    (tmp_path / "real.csv").write_text(REAL_CSV)
    monkeypatch.setenv("ORACLE_HOME", str(tmp_path))
    assert main([str(tmp_path / "real.csv")]) == 0
    png = tmp_path / "var" / "reports" / "drift.png"
    assert capsys.readouterr().out.splitlines()[-1] == f"equity curves: {png}"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
