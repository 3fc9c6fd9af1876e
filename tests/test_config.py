"""The library's own configs refuse a value out of range as the parameters file check does: an infinity or a
NaN anywhere, whether or not the setting has a declared range."""
import math

import pytest

from itpn.config import ConfigValueError, Range
from itpn.finetune import ClassificationConfig
from itpn.pretrain import PretrainConfig


@pytest.mark.parametrize("config, key", [(PretrainConfig, "lr"), (PretrainConfig, "weight_decay"),
                                         (ClassificationConfig, "lr"), (ClassificationConfig, "smoothing")])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_a_config_refuses_a_number_that_is_not_finite(config, key, value):
    with pytest.raises(ConfigValueError) as raised:
        config(**{key: value})
    assert (raised.value.key, raised.value.expected) == (key, "a finite number")


def test_a_range_admits_finite_numbers_only():
    assert Range(0, open_low=True).admits(1e30) and not Range(0, open_low=True).admits(math.inf)
    assert not Range().admits(math.nan) and not Range().admits(True) and not Range().admits("1")
