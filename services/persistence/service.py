"""The persistence process (backbone stage): takes part in the lifecycle; the store comes with issue 6."""

from __future__ import annotations

from common import runtime


class Persistence(runtime.Service):
    name = "persistence"
    not_implemented = [
        "durable store (SQLite) and write API: issue 6",
        "Supabase and PostgreSQL sinks: issue 6",
        "sessions: persistence.session and persistence.close_session record nothing yet (issue 6)",
    ]

    def on_step(self, step: str, args: dict) -> dict:
        if step == "persistence.open":
            data_dir = self.cfg.path(self.cfg.data_dir)
            data_dir.mkdir(parents=True, exist_ok=True)
            return {"data_dir": str(data_dir)}
        if step in ("persistence.session", "persistence.close_session"):
            return {"recorded": False, "why": "sessions are not implemented yet (issue 6)"}
        return super().on_step(step, args)

    def health_info(self) -> dict:
        return {"backlog": 0}


def main(argv: list[str] | None = None) -> int:
    return runtime.main(Persistence, argv)
