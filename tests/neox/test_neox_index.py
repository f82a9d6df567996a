"""Seen-only replay from a stock NeoX run: its index files as NeoX names them for ``train_data_paths`` (1.e)."""
import numpy as np
import pytest

from neox_cpt.data.indexed import IndexedDatasetWriter
from neox_cpt.data.neox_index import NeoXIndexReader, parse_neox_index_prefix

# Three documents of 4, 6, 3 tokens (document i holds 100 i + t), read by NeoX in the order doc_idx = [1, 2, 0]:
#   100..105 | 200 201 202 | 0 1 2 3  -> with seq_length 3, sample s = tokens [3 s, 3 s + 4) of that stream.
SAMPLE_IDX = [[0, 0], [0, 3], [1, 0], [2, 0]]
SAMPLES = [[100, 101, 102, 103], [103, 104, 105, 200], [200, 201, 202, 0]]


def neox_run(tmp_path, name):
    data = str(tmp_path / "pile_text_document")
    with IndexedDatasetWriter(data, np.uint16) as w:
        for i, size in enumerate([4, 6, 3]):
            w.add_document([100 * i + t for t in range(size)])
    prefix = f"{data}_{name}_indexmap_3ns_3sl_1234s_packedpi_ac"
    np.save(prefix + "_doc_idx.npy", np.array([1, 2, 0], np.int32))
    np.save(prefix + "_sample_idx.npy", np.array(SAMPLE_IDX, np.int32))
    np.save(prefix + "_shuffle_idx.npy", np.array([2, 0, 1], np.uint32))
    return data, prefix


@pytest.mark.parametrize("name", ["train", "train_0", "train_12", "valid_1"])
def test_every_neox_dataset_name_parses_to_the_data_prefix(tmp_path, name):
    data, prefix = neox_run(tmp_path, name)
    info = parse_neox_index_prefix(prefix + "_shuffle_idx.npy")
    assert (info["data_prefix"], info["name"], info["num_samples"]) == (data, name, 3)
    reader = NeoXIndexReader(prefix)  # train_0 was read as data prefix ..._train, name 0: FileNotFoundError
    assert [reader.read(k).tolist() for k in range(3)] == [SAMPLES[2], SAMPLES[0], SAMPLES[1]]


def test_missing_data_of_a_neox_index_names_the_key(tmp_path):
    data, prefix = neox_run(tmp_path, "train_0")
    for ext in (".bin", ".idx"):
        (tmp_path / f"pile_text_document{ext}").rename(tmp_path / f"moved{ext}")
    with pytest.raises(FileNotFoundError, match="cpt_replay_index_paths entry .*set cpt_replay_data_paths"):
        NeoXIndexReader(prefix)
    assert NeoXIndexReader(prefix, data_prefix=str(tmp_path / "moved")).read(0).tolist() == SAMPLES[2]
    with pytest.raises(ValueError, match="name train, train_0, train_1"):
        parse_neox_index_prefix(str(tmp_path / "x_indexmap_3ns_3sl_1234s_packedpi"))
