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
        ({"freeze": "partail"}, r"freeze: unknown freeze strategy 'partail'\. Did you mean 'partial'\?"),
        (
            {"augment": "heavy"},
            r"augment: unknown augmentation policy 'heavy'.*Allowed: light, none, randaugment",
        ),
        ({"weights": "imagenet21k"}, r"weights: 'imagenet21k' is not one of none, imagenet"),
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
