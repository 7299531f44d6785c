import pytest

from trainables.config import TrialConfig


def test_unknown_key_names_the_closest_valid_one():
    with pytest.raises(ValueError, match=r"unknown trial config key 'learning_rat'.*'lr'|Did you mean"):
        TrialConfig.from_dict({"arch": "resnet18", "learning_rat": 0.1})
    with pytest.raises(ValueError, match="Did you mean 'augment'"):
        TrialConfig.from_dict({"augmnt": "light"})


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"lr": -1e-3}, r"lr: must be > 0, got -0.001"),
        ({"freeze": "partail"}, r"freeze: unknown freeze strategy 'partail'\. Did you mean 'partial'"),
        (
            {"augment": "heavy"},
            r"augment: unknown augmentation policy 'heavy'.*Allowed: light, none, randaugment",
        ),
        (
            {"weights": "imagenet21k"},
            r"weights: 'imagenet21k' is neither none nor imagenet nor a weights file "
            r"\(\.safetensors, \.pth, \.pt, \.bin\)",
        ),
        ({"weights": "foo.txt"}, r"weights: 'foo\.txt' is neither none nor imagenet nor a weights file"),
        ({"random_erasing": 1.5}, r"random_erasing: a probability in \[0, 1\], got 1\.5"),
        ({"random_erasing": -0.1}, r"random_erasing: a probability in \[0, 1\], got -0\.1"),
        ({"mixup": -0.2}, r"mixup: must be >= 0, got -0\.2"),
        ({"cutmix": -1.0}, r"cutmix: must be >= 0, got -1\.0"),
        (
            {"freeze": "gradual", "gradual_epochs": 4, "max_epochs": 4},
            r"gradual_epochs: .*\[1, max_epochs\), got 4 with max_epochs=4",
        ),
        ({"freeze": "gradual", "gradual_epochs": 0}, r"gradual_epochs: .*got 0 with max_epochs=6"),
        ({"warmup_epochs": 4, "max_epochs": 4}, r"warmup_epochs \(4\) must be shorter than max_epochs \(4\)"),
        ({"label_smoothing": 1.0}, r"label_smoothing: must be in \[0, 1\)"),
        ({"img_size": 4}, r"img_size: must be >= 8"),
    ],
)
def test_impossible_values_are_refused_with_the_field_named(bad, message):
    with pytest.raises(ValueError, match=message):
        TrialConfig(**bad)


def test_round_trip_through_a_plain_dict():
    cfg = TrialConfig(arch="convnext_atto", lr=3e-4, freeze="partial", unfreeze_stages=2)
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("path", ["/shared/weights/r18.safetensors", "~/w/model.pth", "w.pt", "pytorch_model.bin"])
def test_a_weights_file_path_is_accepted_whether_or_not_it_exists_here(path):
    """The config only checks the kind of file; the trial that loads it says if it is missing."""
    assert TrialConfig(weights=path).weights == path


def test_gradual_epochs_only_matter_for_the_gradual_strategy():
    TrialConfig(freeze="gradual", gradual_epochs=3, max_epochs=4)
    TrialConfig(freeze="full", gradual_epochs=10, max_epochs=4)  # ignored by the other strategies
    TrialConfig(random_erasing=0.0)
    TrialConfig(random_erasing=1.0)


@pytest.mark.parametrize(
    "weights, expected",
    [("none", 1.0), ("imagenet", 0.1), ("/models/resnet18.safetensors", 0.1)],
)
def test_the_backbones_share_of_the_learning_rate_depends_on_the_weights(weights, expected):
    """A lower backbone rate protects pretrained features; with random weights it only slows the backbone
    (EfficientNet-B0 on the digits: 31% at 0.1, 68% at 1.0). The resolved value is what the run records."""
    cfg = TrialConfig(weights=weights)
    assert cfg.backbone_lr_mult == expected
    assert cfg.to_dict()["backbone_lr_mult"] == expected
    assert TrialConfig(weights=weights, backbone_lr_mult=0.3).backbone_lr_mult == 0.3  # a recipe's value stands
