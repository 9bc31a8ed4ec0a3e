"""The executor process (backbone stage): reads its symbol config; orders come with issue 5."""

from __future__ import annotations

import json

from common import messages, runtime


class Executor(runtime.Service):
    name = "executor"
    subscribe_to = {"orchestrator": ["sys.state"], "preditor": ["signal."]}
    not_implemented = [
        "sync rule, lots, SL/TP, risk guard: signals are counted, never traded (issue 5)",
        "reconcile: executor.sync does not read the broker's positions yet (issue 5)",
    ]

    def __init__(self, cfg, dry_run: bool = False):
        super().__init__(cfg, dry_run)
        self.symbols: list[str] = []

    def on_step(self, step: str, args: dict) -> dict:
        if step == "executor.load":
            path = self.cfg.path(self.cfg.executor.config_file)
            if not path.exists():
                return {"config_file": str(path), "symbols": [], "note": "no symbol config file"}
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise runtime.StepFailed(f"cannot read symbol config {path}: {exc}") from None
            if not isinstance(data, dict):
                raise runtime.StepFailed(f"symbol config {path} must be a JSON object")
            self.symbols = sorted(k for k in data if not k.startswith("_"))
            return {"config_file": str(path), "symbols": self.symbols}
        if step in ("executor.sync", "executor.stop"):
            return {"positions": None, "why": "reconcile and closing are not implemented yet (issue 5)"}
        return super().on_step(step, args)

    def on_message(self, received) -> None:
        if received.envelope.type == "signal":
            self.count("signals_seen")

    def status_report(self) -> dict:
        return {"symbols": self.symbols, "halted": self.system_state == messages.HALTED}


def main(argv: list[str] | None = None) -> int:
    return runtime.main(Executor, argv)
