"""Method settings: converted to the declared type, checked against range and choices."""

import pytest

from napari_semiseg.errors import SemisegInputError
from napari_semiseg.methods import METHODS
from napari_semiseg.methods.mean_teacher_bcp import MeanTeacherConfig
from napari_semiseg.methods.ppn_auxnet import PPNAuxConfig
from napari_semiseg.methods.supervised import SupervisedConfig


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("false", False),
        ("False", False),
        ("no", False),
        ("0", False),
        ("off", False),
        ("true", True),
        ("YES", True),
        ("1", True),
        (1, True),
        (0, False),
    ],
)
def test_bool_settings_accept_the_usual_spellings(text, expected):
    assert PPNAuxConfig.from_dict({"rescale": text}).rescale is expected


def test_numbers_given_as_text_are_converted():
    config = SupervisedConfig.from_dict({"dice_weight": "0.5"})
    assert config.dice_weight == 0.5
    assert isinstance(config.dice_weight, float)
    assert isinstance(SupervisedConfig.from_dict({"dice_weight": 2}).dice_weight, float)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"dice_weight": "abc"}, "dice_weight = 'abc' is not a number"),
        ({"dice_weight": float("nan")}, "is not finite"),
        ({"dice_weight": 99}, r"dice_weight = 99.0 is outside its range \[0.0, 10.0\]"),
        ({"dice_weight": -1}, "outside its range"),
        ({"use_weight_map": "maybe"}, "use_weight_map = 'maybe' is not true or false"),
        ({"use_weight_map": 2}, "is not true or false"),
        ({"dice_weight": True}, "is not a number"),
    ],
)
def test_wrong_settings_get_a_message_naming_the_setting(values, message):
    with pytest.raises(SemisegInputError, match=message):
        SupervisedConfig.from_dict(values)


def test_strings_stay_strings_and_choices_are_checked():
    assert MeanTeacherConfig.from_dict({"strong_view": "on"}).strong_view == "on"
    with pytest.raises(SemisegInputError, match="is not one of"):
        MeanTeacherConfig.from_dict({"strong_view": 1})


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_default_is_valid_and_survives_a_round_trip(name):
    config_class = METHODS[name].Config
    config = config_class()
    assert config_class.from_dict(config.to_dict()) == config


def test_limits_can_be_wider_than_the_form_range():
    config = MeanTeacherConfig.from_dict({"ema_decay": 0.5})
    assert config.ema_decay == 0.5
    with pytest.raises(
        SemisegInputError, match=r"ema_decay = 1.5 is outside its range \[0.0, 1.0\]"
    ):
        MeanTeacherConfig.from_dict({"ema_decay": 1.5})
