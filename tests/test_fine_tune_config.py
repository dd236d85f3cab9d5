"""FineTuneConfig: the YAML schema of a fine-tuning run, and what it switches on."""

import numpy as np
import pytest
import yaml
from helpers import conv_classifier, random_images

import tfx_transfer as tt
from tfx_transfer.training import FineTuneConfig, Stage

YAML = """
seed: 3
augmentation: {flip: 1, rotation: 0.05}
stages:
  - {train: head, epochs: 2, learning_rate: 0.01}
  - {train: all, epochs: 1, learning_rate: 0.001, schedule: warmup_cosine, label_smoothing: 0.1}
"""


def test_yaml_round_trip_and_defaults(tmp_path):
    path = tmp_path / "fine_tune.yaml"
    path.write_text(YAML)
    config = FineTuneConfig.from_yaml(path)
    assert config.seed == 3 and config.augmentation == {"flip": 1, "rotation": 0.05}
    assert config.stages[1] == Stage(
        train="all", epochs=1, learning_rate=0.001, schedule="warmup_cosine", label_smoothing=0.1
    )
    assert FineTuneConfig.from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict()))) == config
    assert FineTuneConfig().stages == tt.training.default_stages()


@pytest.mark.parametrize(
    "config, message",
    [
        ({"stage": []}, r"Unknown keys \['stage'\] in the fine_tune config"),
        ({"stages": [{"epochs": 1}, {"lr": 0.1}]}, r"Unknown keys \['lr'\] in the stage 2 config"),
        ({"stages": []}, "needs at least one Stage"),
        ({"augmentation": {"mixup": 0.2}}, r"Unknown augmentations \['mixup'\].*tt.data.augment"),
        (
            {"augmentation": {"flip": 1}, "stages": [{"cache_features": True}]},
            r"Stages \[1\] cache features",
        ),
        ({"stages": [{"sync_batchnorm": True}]}, "sync_batchnorm needs train_batchnorm=True"),
        ({"stages": [{"schedule": "cosine"}]}, "Stage schedule='cosine' is not one of"),
    ],
)
def test_bad_configs_name_the_culprit(config, message):
    with pytest.raises(ValueError, match=message):
        FineTuneConfig.from_dict(config)


def data(count=24, classes=3, seed=0):
    images, labels = random_images(count, seed=seed), np.arange(count) % classes
    names = [f"c{i}" for i in range(classes)]
    return tt.data.arrays(
        images, labels, class_names=names, batch_size=8, validation_split=0.25, seed=0
    )


def test_augmentation_trains_differently_and_leaves_no_layers_in_the_model():
    stages = [Stage(train="all", epochs=1, learning_rate=0.05, optimizer="sgd")]
    trained = {}
    for name, augmentation in (("plain", None), ("augmented", {"flip": 1, "rotation": 0.2})):
        model = conv_classifier(3)
        config = FineTuneConfig(stages=tuple(stages), augmentation=augmentation)
        trained[name], _ = tt.fine_tune(model, data(), config=config, verbose=0)
    plain, augmented = (trained[k].get_layer("predictions").kernel.numpy() for k in trained)
    assert not np.allclose(plain, augmented)
    assert [layer.name for layer in trained["augmented"].layers] == [
        layer.name for layer in trained["plain"].layers
    ]


def test_keyword_arguments_override_the_config():
    config = FineTuneConfig(stages=(Stage(epochs=2),))
    _, history = tt.fine_tune(
        conv_classifier(3), data(), config=config, stages=[Stage(epochs=1)], verbose=0
    )
    assert len(history["stage1_loss"]) == 1


def test_old_and_new_accuracy_after_every_stage_of_an_expanded_model():
    base = conv_classifier(3, class_names=["c0", "c1", "c2"])
    expanded = tt.expand_classes(base, new_class_names=["c3"])
    split = data(classes=4)
    stages = [Stage(epochs=1, learning_rate=0.01), Stage(train="all", epochs=1)]
    model, history = tt.fine_tune(expanded, split, stages=stages, teacher=base, verbose=0)
    report = tt.evaluate(model, split.validation, reference=base)
    for number in (1, 2):
        for key in ("old_accuracy", "new_accuracy", "old_accuracy_change"):
            assert len(history[f"stage{number}_{key}"]) == 1
    assert history["stage2_old_accuracy"] == [report.old_accuracy]
    assert history["stage2_new_accuracy"] == [report.new_accuracy]
    assert history["stage2_old_accuracy_change"] == [report.old_accuracy_change]


def test_weight_aligning_stage_and_its_teacher_requirement():
    base = conv_classifier(3, class_names=["c0", "c1", "c2"])
    expanded = tt.expand_classes(base, new_class_names=["c3"])
    stage = Stage(epochs=1, learning_rate=0.05, align_new_classes=True)
    with pytest.raises(ValueError, match="align_new_classes needs fine_tune"):
        tt.fine_tune(expanded, data(classes=4), stages=[stage], verbose=0)
    model, _ = tt.fine_tune(expanded, data(classes=4), stages=[stage], teacher=base, verbose=0)
    norms = np.linalg.norm(model.get_layer("predictions").kernel.numpy(), axis=0)
    np.testing.assert_allclose(norms[3:].mean(), norms[:3].mean(), rtol=1e-5)


def test_unknown_length_data_is_refused_with_the_fix():
    split = data()
    endless = split.train.filter(lambda images, labels: True)
    with pytest.raises(ValueError, match="known length.*assert_cardinality"):
        tt.fine_tune(conv_classifier(3), endless, stages=[Stage()], verbose=0)
