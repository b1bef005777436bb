"""set_num_sms / get_num_sms validation and the Hopper capability check, with a faked device."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from deepgemm.ops import get_num_sms, set_num_sms
from deepgemm.ops.common import settings


def fake_gpu(monkeypatch: pytest.MonkeyPatch, major: int = 9, minor: int = 0, name: str = "H100") -> None:
    props = SimpleNamespace(major=major, minor=minor, name=name, multi_processor_count=132)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(settings, "_device_properties", lambda index: props)


@pytest.fixture(autouse=True)
def restore_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "_num_sms", None)


def test_default_is_the_device_sm_count(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpu(monkeypatch)
    assert get_num_sms() == 132


def test_set_get_and_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpu(monkeypatch)
    set_num_sms(132)
    assert get_num_sms() == 132
    set_num_sms(7)  # odd counts are allowed (multicast configs then go unused)
    assert get_num_sms() == 7
    set_num_sms(np.int64(64))
    assert get_num_sms() == 64 and type(get_num_sms()) is int
    set_num_sms(None)
    assert get_num_sms() == 132


@pytest.mark.parametrize("value", [1.0, "8", True])
def test_set_rejects_non_ints(monkeypatch: pytest.MonkeyPatch, value: object) -> None:
    fake_gpu(monkeypatch)
    with pytest.raises(TypeError, match="num_sms must be an int"):
        set_num_sms(value)


@pytest.mark.parametrize(
    "value, pattern", [(0, ">= 1, got 0"), (-4, ">= 1, got -4"), (133, r"SM count \(132\), got 133")]
)
def test_set_rejects_out_of_range(monkeypatch: pytest.MonkeyPatch, value: int, pattern: str) -> None:
    fake_gpu(monkeypatch)
    set_num_sms(100)
    with pytest.raises(ValueError, match=pattern):
        set_num_sms(value)
    assert get_num_sms() == 100  # a refused value changes nothing


def test_without_cuda_get_and_set_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        get_num_sms()
    with pytest.raises(RuntimeError, match="no CUDA device"):
        set_num_sms(8)


def test_hopper_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpu(monkeypatch)
    settings.check_hopper(torch.device("cuda", 0))


@pytest.mark.parametrize("major, minor, name", [(8, 0, "A100"), (8, 9, "L4"), (10, 0, "B200")])
def test_other_architectures_are_refused(
    monkeypatch: pytest.MonkeyPatch, major: int, minor: int, name: str
) -> None:
    fake_gpu(monkeypatch, major, minor, name)
    expected = rf"needs a Hopper GPU \(sm_90.*cuda:0 is {name} \(sm_{major}{minor}"
    with pytest.raises(RuntimeError, match=expected):
        settings.check_hopper(torch.device("cuda", 0))
