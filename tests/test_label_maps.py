import json

import numpy as np
import pytest

import tfx_transfer as tt
from tfx_transfer.core.label_maps import COCO_IDS, COCO_UNUSED_IDS

NAMES = [f"category_{i}" for i in COCO_IDS]


def test_coco_sparse_ids_map_to_contiguous_indices_and_back():
    label_map = tt.LabelMap.coco(NAMES)
    assert len(COCO_IDS) == 80 and max(COCO_IDS) == 90
    assert not set(COCO_UNUSED_IDS) & set(COCO_IDS)
    indices = label_map.to_indices([1, 11, 13, 90])
    np.testing.assert_array_equal(indices, [0, 10, 11, 79])  # 12 is skipped
    np.testing.assert_array_equal(label_map.to_ids(indices), [1, 11, 13, 90])
    everything = np.array(COCO_IDS)
    np.testing.assert_array_equal(label_map.to_ids(label_map.to_indices(everything)), everything)


def test_unknown_ids_and_indices_are_named():
    label_map = tt.LabelMap.coco(NAMES)
    with pytest.raises(ValueError, match=r"Class ids not in the label map: \[12, 91\]"):
        label_map.to_indices([1, 12, 91])
    with pytest.raises(ValueError, match=r"out of range 0..79: \[80\]"):
        label_map.to_ids([80])


def test_json_round_trip(tmp_path):
    label_map = tt.LabelMap(("cat", "dog"), (3, 17))
    path = label_map.save(tmp_path / "labels.json")
    assert json.loads(path.read_text()) == {
        "classes": [{"id": 3, "name": "cat"}, {"id": 17, "name": "dog"}]
    }
    assert tt.LabelMap.load(path) == label_map


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON"),
        ('{"labels": []}', 'must hold {"classes"'),
        ('{"classes": [{"id": "1", "name": "a"}]}', "entry 0: expected an integer 'id'"),
        ('{"classes": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}', r"duplicated: \[1\]"),
        ('{"classes": [{"id": 1, "name": "a"}, {"id": 2, "name": "a"}]}', r"duplicated: \['a'\]"),
    ],
)
def test_bad_label_map_files_name_the_file_and_problem(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as caught:
        tt.LabelMap.load(path)
    assert "bad.json" in str(caught.value)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        tt.LabelMap.load(tmp_path / "missing.json")


def test_label_map_of_an_expanded_model_keeps_original_ids():
    from helpers import tiny_classifier

    model = tiny_classifier(2, class_names=["a", "b"])
    expanded = tt.expand_classes(model, new_class_names=["c"])
    label_map = tt.LabelMap.from_metadata(tt.class_info(expanded))
    assert label_map.names == ("a", "b", "c") and label_map.ids == (0, 1, 2)
