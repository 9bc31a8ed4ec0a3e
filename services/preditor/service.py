"""The preditor process (backbone stage): lists its model files; the twin comes with issue 3."""

from __future__ import annotations

from common import runtime


class Preditor(runtime.Service):
    name = "preditor"
    subscribe_to = {"orchestrator": ["sys.state"], "connector": ["bar."]}
    not_implemented = [
        "model loading: preditor.load only lists the model files (issue 3)",
        "warmup and signals: no signal is ever published yet (issue 3)",
    ]

    def __init__(self, cfg, dry_run: bool = False):
        super().__init__(cfg, dry_run)
        self.model_files: list[str] = []

    def on_step(self, step: str, args: dict) -> dict:
        if step == "preditor.load":
            models_dir = self.cfg.path(self.cfg.preditor.models_dir)
            if not models_dir.is_dir():
                raise runtime.StepFailed(f"models_dir {models_dir} is not a directory")
            self.model_files = sorted(p.name for p in models_dir.glob("*.zip"))
            return {"model_files": self.model_files, "loaded": 0}
        if step == "preditor.warmup":
            return {"warmed_up": 0}
        return super().on_step(step, args)

    def on_message(self, received) -> None:
        if received.envelope.type == "bar":
            self.count("bars_seen")

    def status_report(self) -> dict:
        return {"model_files": self.model_files}


def main(argv: list[str] | None = None) -> int:
    return runtime.main(Preditor, argv)
