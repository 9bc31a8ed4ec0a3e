"""The connector process (backbone stage): takes part in the lifecycle; the broker comes with issue 4."""

from __future__ import annotations

from common import runtime


class Connector(runtime.Service):
    name = "connector"
    not_implemented = [
        "broker connection: connector.connect connects to nothing yet, no bar is published (issue 4)",
        "history, account, positions and order requests (issue 4)",
    ]

    def on_step(self, step: str, args: dict) -> dict:
        if step in ("connector.connect", "connector.disconnect"):
            return {"broker": self.cfg.broker.type, "connected": False, "why": "not implemented yet (issue 4)"}
        return super().on_step(step, args)


def main(argv: list[str] | None = None) -> int:
    return runtime.main(Connector, argv)
