"""The launch plan is resolved on global rank 0 only and every rank applies that one (two gloo processes)."""
import os
import socket

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow  # two interpreters start (torch imports): a few seconds


def _worker(rank: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    from neox_cpt.neox.runtime import _agreed

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    calls = []
    value = _agreed(lambda: calls.append(rank) or {"resolved_on": rank})
    try:
        _agreed(lambda: (_ for _ in ()).throw(FileNotFoundError("cpt_init_checkpoint: '/x' does not exist")))
        error = None
    except FileNotFoundError as exc:
        error = str(exc)
    with open(os.path.join(out_dir, f"rank{rank}"), "w") as f:
        f.write(repr((value, calls, error)))
    dist.destroy_process_group()


def test_rank0_resolves_and_every_rank_gets_its_plan_or_its_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    error = "cpt_init_checkpoint: '/x' does not exist"
    assert (tmp_path / "rank0").read_text() == repr(({"resolved_on": 0}, [0], error))
    assert (tmp_path / "rank1").read_text() == repr(({"resolved_on": 0}, [], error))  # rank 1 read nothing itself
