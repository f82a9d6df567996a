"""``neox-cpt schedule``: CSV values at global steps, the phase table, plots, errors."""
import math
from pathlib import Path

import pytest

from neox_cpt.cli import main
from neox_cpt.commands.schedule import parse_steps

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "schedules"
PRE, CPT = str(CONFIGS / "405M_pretrain_cosine.yml"), str(CONFIGS / "405M_cpt_slimpajama.yml")


def test_csv_steps(capsys):
    assert main(["schedule", PRE, CPT, "--steps", "0,1,1324,132366,132367,133690,264732,300000", "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "step,lr"
    rows = [(int(s), float(v)) for s, v in (line.split(",") for line in lines[1:])]
    assert [s for s, _ in rows] == [0, 1, 1324, 132366, 132367, 133690, 264732, 300000]
    lrs = [v for _, v in rows]
    assert lrs[0] == 0.0
    assert lrs[1] == pytest.approx(3e-4 / 1324, rel=1e-12)
    assert lrs[2] == 3e-4 and lrs[3] == 3e-5
    assert lrs[4] == pytest.approx(3e-4 / 1324, rel=1e-12)  # re-warm starts again from 0
    assert lrs[5] == 3e-4 and lrs[6] == 3e-5 and lrs[7] == 3e-5  # hold after the end


def test_phase_table(capsys):
    assert main(["schedule", PRE, CPT]) == 0
    out = capsys.readouterr().out
    assert "2 stage(s), global steps 0..264732, 2,260,992 tokens/step" in out
    assert "slimpajama     warmup    linear         132,366..133,690" in out
    assert "holds 3e-05 after step 264,732" in out


def test_phase_csv(capsys):
    assert main(["schedule", str(CONFIGS / "405M_infinite_stage1_inv_sqrt.yml"), "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["stage,phase,shape,start_step,end_step,lr_start,lr_end",
                     "inf_d0,warmup,linear,0,441,0.0,0.0003",
                     "inf_d0,cooldown,inv_sqrt,441,26473,0.0003,0.000165",
                     "inf_d0,constant,constant,26473,44122,0.000165,0.000165"]


def test_merged_files_for_one_stage(tmp_path, capsys):
    a, b = tmp_path / "model.yml", tmp_path / "sched.yml"
    a.write_text("train_iters: 100\noptimizer: {params: {lr: 1.0e-3}}\n")
    b.write_text("cpt_warmup_iters: 10\n")
    assert main(["schedule", f"{a},{b}", "--steps", "0:20:10", "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["step,lr", "0,0.0", "10,0.001"]
    expected = 1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi * 10 / 90))
    assert lines[3].startswith("20,") and float(lines[3][3:]) == pytest.approx(expected, rel=1e-12)


def test_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "plan.png"
    branch = str(CONFIGS / "405M_infinite_anneal.yml")
    stages = [str(CONFIGS / f"405M_infinite_stage{s}.yml") for s in ("1_cosine", "2", "3")]
    assert main(["schedule", *stages, "--branch", branch, "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


@pytest.mark.parametrize("argv,message", [
    (["--steps", "0,abc"], "--steps item 'abc' is not a step"),
    (["--steps", "-5"], "--steps -5 is before the plan starts"),
])
def test_cli_errors(argv, message, capsys):
    assert main(["schedule", PRE, *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_overlap_and_missing_file(capsys, tmp_path):
    assert main(["schedule", PRE, str(CONFIGS / "405M_infinite_stage2.yml")]) == 2
    assert "stage 'inf_d1': cpt_stage_start_iter = 44122 is before the previous stage 'pile'" in capsys.readouterr().err
    assert main(["schedule", str(tmp_path / "missing.yml")]) == 2
    assert "missing.yml' does not exist" in capsys.readouterr().err


def test_parse_steps():
    assert parse_steps("0,50, 100") == [0, 50, 100]
    assert parse_steps("0:10:5,12.5") == [0, 5, 10, 12.5]
    with pytest.raises(ValueError, match="lists no steps"):
        parse_steps(",")
