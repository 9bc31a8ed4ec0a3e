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
    assert main([str(tmp_path / "all.json"), "--since", "950", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert [(r["symbol"], r["paper_trades"], r["real_trades"]) for r in table] == [("EURUSD", 1, 1), ("ALL", 1, 1)]


@pytest.mark.parametrize("content,name,message", [
    ("[{\"symbol\": \"EURUSD\"}]", "bad.json", "bad.json row 1"),
    ("{\"rows\": []}", "bad.json", "expected a JSON list"),
    ("{ nope", "bad.json", "Expecting"),
])
def test_report_bad_input(tmp_path, capsys, content, name, message):
    (tmp_path / name).write_text(content)
    assert main([str(tmp_path / name)]) == 2
    assert message in capsys.readouterr().err


def test_report_needs_files(capsys):
    assert main([]) == 2
    assert "no trade files" in capsys.readouterr().err


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
