"""Config grafting: plugin keys load like NeoX keys, are validated, travel to workers, stay out of DeepSpeed."""
import dataclasses

import pytest

from neox_cpt.neox import keys
from neox_cpt.neox.graft import as_mapping, make_graft_class

BASE = {"train_batch_size": 8, "train_iters": 100, "seq_length": 16, "optimizer": {"type": "Adam",
        "params": {"lr": 3e-4}}, "save": "/tmp/x"}


def test_every_key_has_a_docstring_and_a_neox_type():
    rows = keys.graft_fields()
    names = [r.name for r in rows]
    assert len(names) == len(set(names))
    for r in rows:
        assert r.doc, r.name
        assert r.name.startswith("cpt_")
    by_name = {r.name: r for r in rows}
    assert by_name["cpt_lr_max"].type is float and by_name["cpt_warmup_iters"].type is int
    assert by_name["cpt_stage_iters"].type is int and by_name["cpt_reset_optimizer"].type is bool
    assert {r.default for r in rows} == {None}  # unset keys stay absent from the config the core reads
    assert {"cpt_lr_schedule", "cpt_stage_name", "cpt_init_checkpoint", "cpt_reset_optimizer"} <= set(names)


def test_graft_rows_are_the_families_keyspecs():
    from neox_cpt.data.keys import DATA_KEYS
    from neox_cpt.schedules.keys import NEOX_TYPES, SCHEDULE_KEYS, STAGE_KEYS

    rows = {r.name: r for r in keys.graft_fields()}
    families = {"schedules": SCHEDULE_KEYS, "data": DATA_KEYS, "stages": STAGE_KEYS}
    assert set(rows) == set(SCHEDULE_KEYS) | set(DATA_KEYS) | set(STAGE_KEYS)
    for owner, specs in families.items():
        for name, spec in specs.items():  # one description: the graft's is the owner's object
            assert (rows[name].type, rows[name].owner) == (spec.type, owner) and rows[name].doc is spec.doc
            assert spec.type in NEOX_TYPES
    assert rows["cpt_replay_frac"].type is float and rows["cpt_train_data_paths"].type is list


def test_keyspec_rejects_types_neox_cannot_validate_and_duplicates_raise():
    from neox_cpt.schedules.keys import KeySpec

    with pytest.raises(TypeError, match="validate_types"):
        KeySpec(set, "—", "doc")
    spec = KeySpec(int, "—", "doc")
    with pytest.raises(ValueError, match="cpt_x declared twice"):
        keys.graft_fields({"a": {"cpt_x": spec}, "b": {"cpt_x": spec}})


def test_graft_keys_load_and_travel_but_not_to_deepspeed(standin):
    args = standin.NeoXArgs.from_dict(dict(BASE, cpt_lr_schedule="infinite", cpt_lr_max=3e-4,
                                           cpt_warmup_iters=5, cpt_cooldown_end_iter=60))
    assert args.cpt_lr_schedule == "infinite" and args.cpt_warmup_iters == 5
    assert not any(k.startswith("cpt_") for k in args.deepspeed_config)
    sent = args.megatron_config_for_workers()
    assert {k: v for k, v in sent.items() if k.startswith("cpt_")} == {
        "cpt_lr_schedule": "infinite", "cpt_lr_max": 3e-4, "cpt_warmup_iters": 5, "cpt_cooldown_end_iter": 60}
    # the worker side rebuilds the same object from the payload
    again = standin.NeoXArgs.from_dict(sent)
    assert again.cpt_cooldown_end_iter == 60 and again.cpt_lr_schedule == "infinite"
    assert standin.arguments.BASE_CLASSES[-1].__name__ == "NeoXArgsCpt"
    assert standin.arguments.NEOX_ARG_CLASSES[-1].__name__ == "NeoXArgsCpt"


def test_unknown_key_is_still_a_type_error(standin):
    with pytest.raises(TypeError):
        standin.NeoXArgs.from_dict(dict(BASE, cpt_no_such_key=1))


def test_config_without_plugin_keys_equals_stock(standin, stock_standin_values):
    args = standin.NeoXArgs.from_dict(dict(BASE))
    ours = {k: getattr(args, k) for k in stock_standin_values}
    assert ours == stock_standin_values
    assert not any(k.startswith("cpt_") for k in args.megatron_config_for_workers())


@pytest.fixture
def stock_standin_values(stock_standin):
    args = stock_standin.NeoXArgs.from_dict(dict(BASE))
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(args)}


@pytest.mark.parametrize("extra, message", [
    ({"cpt_reset_optimizer": "yes"}, "cpt_reset_optimizer: 'yes' is not a boolean"),
    ({"cpt_stage_iters": 8.8e4}, "cpt_stage_iters: 88000.0 must be a whole number"),
    ({"cpt_init_checkpoint": "/ckpt/d0"}, "cpt_stage_name: missing"),
    ({"cpt_init_checkpoint": "/ckpt/d0", "cpt_stage_name": "d1", "load": "/ckpt/d0"}, "load: '/ckpt/d0' differs"),
    ({"cpt_init_checkpoint": "/ckpt/d0", "cpt_stage_name": "d1", "finetune": True}, "finetune: true conflicts"),
    ({"cpt_lr_schedule": "cosin"}, "did you mean 'cosine'"),
    ({"cpt_lr_max": "1e-4"}, "cpt_lr_max = '1e-4' is not a number"),
])
def test_our_validation_names_key_and_fix(standin, extra, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        standin.NeoXArgs.from_dict(dict(BASE, **extra))


def test_neox_type_check_applies_to_plugin_keys(standin):
    # The graft declares each key with its KeySpec type (what NeoX's validate_types checks).
    cls = make_graft_class(object, [keys.GraftField("cpt_x", int, None, "doc", "t")])
    assert [f.type for f in dataclasses.fields(cls)] == [int]
    # A plugin key of the wrong type is refused by our own check (before NeoX's validate_types), naming the
    # key (issue 10).
    with pytest.raises(ValueError, match="cpt_cooldown_shape = 3 must be one text value, not an int"):
        standin.NeoXArgs.from_dict(dict(BASE, cpt_cooldown_shape=3))  # cosine recipe ignores it


def test_as_mapping_drops_unset_values():
    assert as_mapping({"a": None, "b": 1}) == {"b": 1}


def test_replay_config_keys_are_the_data_keys():
    from neox_cpt.data.keys import DATA_KEYS
    from neox_cpt.data.spec import REPLAY_CONFIG_KEYS

    assert REPLAY_CONFIG_KEYS == tuple(DATA_KEYS) and "cpt_replay_frac" in REPLAY_CONFIG_KEYS


@pytest.mark.parametrize("rel", sorted(keys.DOC_TABLES))
def test_docs_key_tables_are_generated_from_the_keyspecs(rel):
    import os

    root = os.path.join(os.path.dirname(__file__), "..", "..")
    table = keys.doc_table(open(os.path.join(root, rel)).read())
    assert table == keys.DOC_TABLES[rel](), "regenerate: python -m neox_cpt.neox.keys"
    assert table.count("\n| `cpt_") == len({"docs/schedules.md": keys.SCHEDULE_KEYS, "docs/replay.md": keys.DATA_KEYS,
                                            "docs/neox.md": keys.STAGE_KEYS}[rel])
