"""Run directories: every run is self-describing and resumable.

    runs/<stage>-<timestamp>/
      config.toml          the resolved config (all stages, every field)
      meta.json            stage, seed, command line, start time, library versions, device, precision
      metrics.jsonl        one JSON object a line: {"step", "split", metric: value, ...}
      tb/                  TensorBoard events of the same metrics
      checkpoints/step-N/  HF-format model + tokenizer, and trainer_state.pt (optimizer, step, RNG) to resume
      final/               HF-format model + tokenizer at the end of the run
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from alinea.config import AlineaConfig, load_config, save_config
from alinea.errors import UserError


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("alinea", "torch", "transformers", "tokenizers", "accelerate", "peft", "numpy"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "unknown")
        except ImportError:
            continue
    return versions


class RunDir:
    """A run directory: where a stage writes its config, metrics and checkpoints."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # -- creation and resumption ---------------------------------------------------------------------------------

    @classmethod
    def create(
        cls, stage: str, cfg: AlineaConfig, *, runs_dir: str | Path, seed: int, extra: dict | None = None,
        path: str | Path | None = None,
    ):
        """Make `runs_dir/<stage>-<timestamp>/` (or `path`, which must not hold a run) and write config.toml, meta.json."""
        if path is not None:
            path = Path(path)
            if (path / "meta.json").exists():
                raise UserError(f"{path}: already holds a run; resume it with --resume or choose another --out.")
            path.mkdir(parents=True, exist_ok=True)
        else:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            base = Path(runs_dir) / f"{stage}-{stamp}"
            path, n = base, 1
            while path.exists():
                n += 1
                path = base.with_name(f"{base.name}-{n}")
            path.mkdir(parents=True)
        run = cls(path)
        save_config(cfg, path / "config.toml")
        meta = {
            "stage": stage,
            "seed": seed,
            "started": datetime.now().isoformat(timespec="seconds"),
            "command": sys.argv,
            "versions": library_versions(),
            "platform": platform.platform(),
            **(extra or {}),
        }
        (path / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return run

    @classmethod
    def open(cls, path: str | Path, *, stage: str | None = None) -> RunDir:
        """Open an existing run directory (for --resume); anything else is a `UserError`."""
        path = Path(path)
        if not (path / "config.toml").is_file() or not (path / "meta.json").is_file():
            raise UserError(f"{path}: not a run directory (expected config.toml and meta.json inside).")
        run = cls(path)
        if stage is not None and run.meta().get("stage") != stage:
            raise UserError(f"{path}: this is a '{run.meta().get('stage')}' run, not a '{stage}' run.")
        return run

    def meta(self) -> dict[str, Any]:
        return json.loads((self.path / "meta.json").read_text(encoding="utf-8"))

    def config(self) -> AlineaConfig:
        return load_config(self.path / "config.toml")

    # -- checkpoints ---------------------------------------------------------------------------------------------

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def final_dir(self) -> Path:
        return self.path / "final"

    def checkpoint_dir(self, step: int) -> Path:
        return self.checkpoints_dir / f"step-{step}"

    def latest_checkpoint(self) -> Path | None:
        """The checkpoint with the highest step that was completely written (has trainer_state.pt)."""
        if not self.checkpoints_dir.is_dir():
            return None
        done = [p for p in self.checkpoints_dir.glob("step-*") if (p / "trainer_state.pt").is_file()]
        if not done:
            return None
        return max(done, key=lambda p: int(p.name.split("-")[1]))

    def prune_checkpoints(self, keep: int = 2) -> None:
        """Keep the newest `keep` checkpoints."""
        done = sorted(
            (p for p in self.checkpoints_dir.glob("step-*") if (p / "trainer_state.pt").is_file()),
            key=lambda p: int(p.name.split("-")[1]),
        )
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)

    # -- metrics -------------------------------------------------------------------------------------------------

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def read_metrics(self, split: str | None = None) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        rows = [json.loads(line) for line in self.metrics_path.read_text(encoding="utf-8").splitlines() if line]
        return [r for r in rows if split is None or r.get("split") == split]

    def truncate_metrics(self, after_step: int) -> None:
        """Drop metric lines past `after_step` (a resumed run writes them again)."""
        rows = [r for r in self.read_metrics() if r.get("step", 0) <= after_step]
        tmp = self.metrics_path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        os.replace(tmp, self.metrics_path)


class MetricsLogger:
    """Appends metrics to metrics.jsonl (flushed each line, so a crash loses nothing) and to TensorBoard."""

    def __init__(self, run: RunDir, *, enabled: bool = True) -> None:
        self.run = run
        self.enabled = enabled
        self._file = None
        self._tb = None
        if enabled:
            self._file = open(run.metrics_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(run.path / "tb"))
            except ImportError:  # tensorboard is a dependency, but metrics.jsonl suffices
                self._tb = None

    def log(self, step: int, split: str, **metrics: float) -> None:
        if not self.enabled:
            return
        # NaN / inf are not JSON: written as null (e.g. explained variance of a constant return).
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        row = {"step": step, "split": split, "time": round(time.time(), 3), **clean}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tb is not None:
            for name, value in metrics.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    self._tb.add_scalar(f"{split}/{name}", value, step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None
