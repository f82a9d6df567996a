"""Fixtures of the end-to-end suite: the NeoX checkout, tiny data, and the runs scenarios share.

Runs are session-scoped and built on first use, so a scenario pays only for its own launches: one stock D0
per checkpoint-compatible layout, one uninterrupted stage D1 per layout (scenario a), reused by b, e and f.
Without a NeoX checkout only test_neox_found.py is collected: the suite's one skip line says how to get NeoX.
"""
import shutil
from pathlib import Path
from typing import Dict

import pytest

import neox_e2e as e2e
from neox_e2e import D0_ITERS, D1_ITERS, LAYOUTS, is_pipeline

FOUND = e2e.find_neox()
if isinstance(FOUND, str):
    collect_ignore = [p.name for p in Path(__file__).parent.glob("test_*.py") if p.name != "test_neox_found.py"]


@pytest.fixture(scope="session")
def neox():
    if isinstance(FOUND, str):
        pytest.skip(FOUND)
    return FOUND


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("neox_e2e")
    e2e.TIMINGS = path / "launches.tsv"
    return path


@pytest.fixture(scope="session")
def data(neox, workdir) -> Dict[str, str]:
    return e2e.write_sources(neox, workdir / "data")


def layout_config(layout: str, run_dir: Path, **overrides) -> dict:
    cfg = dict(LAYOUTS[layout]["cfg"])
    if is_pipeline(layout):  # nothing to evaluate with (PIPELINE_NO_EVAL)
        cfg["eval_iters"] = 0
    cfg.update(overrides)
    return e2e.tiny_config(run_dir, **cfg)


class Runs:
    """Runs built once per session, on demand."""

    def __init__(self, neox, workdir: Path, data: Dict[str, str]):
        self.neox, self.workdir, self.data = neox, workdir, data
        self.cache: Dict[str, object] = {}

    def d0(self, layout: str) -> e2e.Launch:
        """Stock NeoX (no cpt_ key, stock AnnealingLR) on the old source, NeoX's train_data_paths form."""
        key = "d0-" + LAYOUTS[layout]["d0"]
        if key not in self.cache:
            run_dir = self.workdir / key
            old = [self.data["old"]]
            paths = {"train_data_paths": old, "valid_data_paths": old, "test_data_paths": old}
            cfg = layout_config(LAYOUTS[layout]["d0"], run_dir, train_iters=D0_ITERS, lr_decay_style="cosine",
                                warmup=0.1, min_lr=0.0001, load=str(run_dir / "ckpt"), **paths)
            self.cache[key] = e2e.check_ok(e2e.launch(self.neox, cfg, run_dir, "d0"))
        return self.cache[key]

    def d1_config(self, layout: str, run_dir: Path, **overrides) -> dict:
        """Stage D1: re-warm (2 iters) + cosine re-decay over 12 iterations, 25 % replay of D0's data."""
        d0 = self.d0(layout)
        stage = dict(cpt_stage_name="d1", cpt_init_checkpoint=str(d0.dir / "ckpt"), cpt_stage_iters=D1_ITERS,
                     cpt_stage_start_iter=D0_ITERS, train_iters=D1_ITERS, cpt_lr_schedule="cosine",
                     cpt_lr_max=0.001, cpt_lr_min=0.0001, cpt_warmup_iters=2,
                     cpt_train_data_paths=[self.data["new"]], cpt_replay_data_paths=[self.data["old"]],
                     cpt_replay_frac=0.25, cpt_index_cache_dir=str(self.workdir / "index"))
        if not is_pipeline(layout):
            stage["cpt_valid_data_paths"] = [self.data["old"], self.data["new"]]
        stage.update(overrides)
        return layout_config(layout, run_dir, **stage)

    def d1(self, layout: str) -> e2e.Launch:
        """D1 uninterrupted (scenario a): global iterations 11..22."""
        key = "d1-" + layout
        if key not in self.cache:
            run_dir = self.workdir / key
            self.cache[key] = e2e.check_ok(e2e.launch(self.neox, self.d1_config(layout, run_dir), run_dir, "d1"))
        return self.cache[key]

    def d1_killed(self, layout: str, kill_after: int = 18):
        """D1 SIGKILLed after iteration 18 (last checkpoint: global_step16), a copy of its directory as the
        crash left it (for scenario f), then relaunched with the same command (scenario b)."""
        key = "d1-killed-" + layout
        if key not in self.cache:
            run_dir = self.workdir / key
            cfg = self.d1_config(layout, run_dir, master_port=e2e.free_port())
            killed = e2e.check_checkout(e2e.launch(self.neox, cfg, run_dir, "d1", kill_after_iteration=kill_after))
            assert killed.killed_at == kill_after, killed.log[-3000:]
            snapshot = self.workdir / f"{key}-as-crashed"
            shutil.copytree(run_dir / "ckpt", snapshot)
            resumed = e2e.launch(self.neox, cfg, run_dir, "d1-resumed", config_name="d1")
            self.cache[key] = (killed, snapshot, e2e.check_ok(resumed))
        return self.cache[key]


@pytest.fixture(scope="session")
def runs(neox, workdir, data) -> Runs:
    return Runs(neox, workdir, data)
