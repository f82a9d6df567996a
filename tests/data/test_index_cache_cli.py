"""`neox-cpt index-cache`: list a cache, keep what configs use (transitively), prune the rest."""
import os
import time

import yaml

from neox_cpt.cli import main
from neox_cpt.data import fingerprint
from neox_cpt.data.cache import build_index
from neox_cpt.data.publish import PREFIX
from neox_cpt.data.spec import replay_spec_from_config
from replay_helpers import numbered_docs, random_sizes, write_docs


def make_configs(tmp_path):
    new = write_docs(tmp_path / "new", numbered_docs(random_sizes(30, 1)))
    old = write_docs(tmp_path / "old", numbered_docs(random_sizes(30, 2), base=5000))
    base = {"cpt_train_data_paths": [new], "cpt_replay_data_paths": [old], "cpt_replay_frac": 0.1,
            "cpt_index_cache_dir": str(tmp_path / "cache"), "train_iters": 5, "train_batch_size": 20,
            "seq_length": 6, "seed": 3}
    paths = []
    for i, frac in enumerate((0.1, 0.2)):
        cfg = dict(base, cpt_replay_frac=frac)
        paths.append(tmp_path / f"stage{i}.yml")
        paths[-1].write_text(yaml.safe_dump(cfg))
    return paths, base, new


def names(out, state):
    return sorted(line.split()[0] for line in out.splitlines() if f"  {state} " in line)


def test_lists_then_prunes_what_no_kept_config_uses(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(fingerprint, "RACY_NS", 0)
    (stage0, stage1), base, new = make_configs(tmp_path)
    cache = tmp_path / "cache"
    used = build_index(replay_spec_from_config(dict(base, cpt_replay_frac=0.1)), cache, progress=False)
    unused = build_index(replay_spec_from_config(dict(base, cpt_replay_frac=0.2)), cache, progress=False)
    # A seen-only stage on `used`: keeping it keeps `used` too (it replays from it).
    seen_cfg = tmp_path / "seen.yml"
    seen_cfg.write_text(yaml.safe_dump(dict(base, cpt_replay_seen_only=True, cpt_replay_index_paths=[str(used)],
                                            cpt_replay_consumed_samples=[50], cpt_replay_frac=0.5,
                                            cpt_replay_data_paths=None, train_iters=2, cpt_stage_name="seen")))
    seen = build_index(replay_spec_from_config(yaml.safe_load(seen_cfg.read_text())), cache, progress=False)
    debris = cache / f"{PREFIX}{used.name}+{os.uname().nodename}+999999999+0+ffff"
    debris.mkdir()
    assert main(["index-cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert names(out, "current") == sorted([used.name, unused.name, seen.name])
    assert names(out, "debris") == [debris.name] and "rerun with --prune" in out
    assert debris.exists()  # listing removes nothing

    assert main(["index-cache", str(cache), "--keep", str(seen_cfg), "--prune"]) == 0
    out = capsys.readouterr().out
    assert names(out, "kept") == sorted([used.name, seen.name]) and names(out, "unused") == [unused.name]
    assert used.exists() and seen.exists() and not unused.exists() and not debris.exists()


def test_without_configs_only_indexes_of_changed_sources_are_pruned(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(fingerprint, "RACY_NS", 0)
    (stage0, _), base, new = make_configs(tmp_path)
    cache = tmp_path / "cache"
    before = build_index(replay_spec_from_config(base), cache, progress=False)
    time.sleep(0.01)
    write_docs(tmp_path / "new", numbered_docs(random_sizes(30, 9)))  # the data was rewritten
    after = build_index(replay_spec_from_config(base), cache, progress=False)
    assert after != before
    assert main(["index-cache", str(cache), "--prune"]) == 0
    out = capsys.readouterr().out
    assert names(out, "stale") == [before.name] and names(out, "current") == [after.name]
    assert not before.exists() and after.exists()
    records = sorted((cache / ".sources").glob("*.json"))
    os.rename(tmp_path / "old.idx", tmp_path / "moved.idx")  # a record now points at a vanished file
    assert main(["index-cache", str(cache), "--prune"]) == 0
    assert "1 fingerprint record(s) of files that no longer exist" in capsys.readouterr().out
    assert len(sorted((cache / ".sources").glob("*.json"))) == len(records) - 1
