"""Run-directory outputs: ``metrics.jsonl`` records, JSON files, TensorBoard events and the progress line.

``metrics.jsonl`` is append-only; each checkpoint remembers its length in bytes, and a resumed run
truncates the file to that length first, so records after the checkpoint are written once.

    >>> progress_line("d1", 120, 1000, 3e-4, 3.1234, 12345.6, 125.0)
    'stage d1 | step 120/1000 | lr 3.0e-04 | loss 3.123 | tok/s 12,346 | eta 2m05s'
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping, Optional

from neox_cpt.local.checkpoint import write_text_atomic

logger = logging.getLogger(__name__)


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    write_text_atomic(path, json.dumps(obj, indent=1) + "\n")


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress_line(stage: str, stage_step: int, stage_steps: int, lr: float, loss: float, tok_per_s: float,
                  eta_s: float) -> str:
    """``stage d1 | step 120/1000 | lr 3.0e-04 | loss 3.123 | tok/s 12,345 | eta 2m05s``."""
    return (f"stage {stage} | step {stage_step}/{stage_steps} | lr {lr:.1e} | loss {loss:.3f} | "
            f"tok/s {tok_per_s:,.0f} | eta {format_eta(eta_s)}")


class MetricsWriter:
    """Appends JSON records to ``metrics.jsonl`` (flushed per record) and mirrors scalars to TensorBoard."""

    def __init__(self, run_dir: Path, truncate_to: Optional[int], tensorboard: bool = True,
                 resume_step: Optional[int] = None) -> None:
        """``truncate_to``: bytes of ``metrics.jsonl`` the checkpoint vouches for (None: start the file afresh);
        ``resume_step``: the checkpoint's global step — TensorBoard drops what a killed run logged after it."""
        self.path = Path(run_dir) / "metrics.jsonl"
        if truncate_to is None:
            self.path.write_text("")
        else:
            with open(self.path, "a+b") as f:
                size = f.seek(0, 2)
                if size < truncate_to:
                    raise ValueError(f"{self.path} holds {size} bytes but the checkpoint expects {truncate_to}: the "
                                     "metrics file was edited or replaced; restore it or start the run afresh")
                f.truncate(truncate_to)
        self._file = open(self.path, "a")
        purge = None if resume_step is None else resume_step + 1
        self._tb = _tensorboard(Path(run_dir) / "tensorboard", purge) if tensorboard else None

    def write(self, record: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            step = int(record["global_step"])
            if record["kind"] == "train":
                for key in ("loss", "lr", "tok_per_s"):
                    self._tb.add_scalar(f"train/{key}", record[key], step)
            else:
                self._tb.add_scalar(f"eval/{record['source']}", record["loss"], step)

    def tell(self) -> int:
        """Bytes written so far (what a checkpoint stores)."""
        self._file.flush()
        return self._file.tell()

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _tensorboard(log_dir: Path, purge_step: Optional[int]) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception as exc:  # tensorboard is optional
        logger.debug("no TensorBoard events (%s)", exc)
        return None
    # purge_step: events of global step >= purge_step that an interrupted run wrote are hidden on reading,
    # so a resumed run's curves hold each step once, as metrics.jsonl does after its truncation.
    return SummaryWriter(str(log_dir), purge_step=purge_step)
