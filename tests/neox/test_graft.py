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
    assert by_name["cpt_stage_iters"].type is int and by_name["cpt_reset_optimizer"].default is False
    assert {"cpt_lr_schedule", "cpt_stage_name", "cpt_init_checkpoint", "cpt_reset_optimizer"} <= set(names)


def test_neox_type_mapping():
    from typing import List, Literal, Optional, Tuple, Union

    assert keys.neox_type(Optional[int], "k") is int
    assert keys.neox_type(Tuple[str, ...], "k") is list and keys.neox_type(List[float], "k") is list
    assert keys.neox_type(Literal["a", "b"], "k") == Literal["a", "b"]
    assert keys.neox_type(Optional[Union[str, float]], "k") == Union[str, float, int]
    with pytest.raises(TypeError, match="plugin key k"):
        keys.neox_type(set, "k")


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
    # A wrong type that our validation does not own still fails NeoX's validate_types.
    cls = make_graft_class(object, [keys.GraftField("cpt_x", int, None, "doc", "t")])
    assert [f.type for f in dataclasses.fields(cls)] == [int]
    with pytest.raises(ValueError, match="types cannot be validated"):
        standin.NeoXArgs.from_dict(dict(BASE, cpt_cooldown_shape=3))  # cosine recipe ignores it


def test_as_mapping_drops_unset_values():
    assert as_mapping({"a": None, "b": 1}) == {"b": 1}


def test_data_key_table_matches_the_replay_index_keys():
    from neox_cpt.data.spec import REPLAY_CONFIG_KEYS

    assert set(keys.DATA_KEY_DOCS) == set(REPLAY_CONFIG_KEYS)
    assert set(keys.KEY_MAPPINGS["neox_cpt.neox.keys:DATA_KEY_DOCS"]) == set(REPLAY_CONFIG_KEYS)


def test_schedule_key_table_matches_the_schedule_keys():
    from neox_cpt.schedules.keys import SCHEDULE_KEYS

    assert set(keys.KEY_MAPPINGS["neox_cpt.schedules.keys:SCHEDULE_KEYS"]) == set(SCHEDULE_KEYS)


def test_docs_key_table_is_generated_from_the_docstrings():
    import os

    doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "neox.md")).read()
    table = doc.split("<!-- keys:start -->\n", 1)[1].split("\n<!-- keys:end -->", 1)[0]
    assert table == keys.markdown_table(), "regenerate: python -m neox_cpt.neox.keys"
