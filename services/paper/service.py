"""The paper process (backbone stage): takes part in the lifecycle; simulation comes with issue 5."""

from __future__ import annotations

from common import runtime


class Paper(runtime.Service):
    name = "paper"
    subscribe_to = {"orchestrator": ["sys.state"], "connector": ["bar."], "preditor": ["signal."]}
    not_implemented = ["paper accounts, metrics and drift: bars and signals are counted only (issue 5)"]

    def on_step(self, step: str, args: dict) -> dict:
        if step in ("paper.load", "paper.warmup"):
            return {"accounts": 0}
        return super().on_step(step, args)

    def on_message(self, received) -> None:
        kind = received.envelope.type
        if kind in ("bar", "signal"):
            self.count(f"{kind}s_seen")


def main(argv: list[str] | None = None) -> int:
    return runtime.main(Paper, argv)
