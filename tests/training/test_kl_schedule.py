"""KL-weight schedule: values at chosen steps for each mode, config validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from framecast.config.autoencoder import AutoencoderConfig, KLScheduleConfig
from framecast.training.kl_schedule import KLSchedule


def test_constant() -> None:
    schedule = KLSchedule("constant", target=1e-3)
    assert [schedule.value(s) for s in (0, 1, 10_000)] == [1e-3, 1e-3, 1e-3]


def test_linear_warmup() -> None:
    schedule = KLSchedule("linear", target=1e-2, start=0.0, warmup_steps=100)
    assert schedule.value(0) == 0.0
    assert schedule.value(25) == pytest.approx(2.5e-3)
    assert schedule.value(50) == pytest.approx(5e-3)
    assert schedule.value(100) == pytest.approx(1e-2)
    assert schedule.value(10_000) == pytest.approx(1e-2)
    from_nonzero = KLSchedule("linear", target=1e-2, start=1e-4, warmup_steps=10)
    assert from_nonzero.value(0) == pytest.approx(1e-4)
    assert from_nonzero.value(5) == pytest.approx(1e-4 + 0.5 * (1e-2 - 1e-4))


@given(
    start=st.floats(0, 1),
    target=st.floats(0, 1),
    warmup=st.integers(1, 1000),
    step=st.integers(0, 2000),
)
def test_linear_stays_between_start_and_target(
    start: float, target: float, warmup: int, step: int
) -> None:
    value = KLSchedule("linear", target=target, start=start, warmup_steps=warmup).value(step)
    assert min(start, target) - 1e-12 <= value <= max(start, target) + 1e-12


def test_stepped_phases() -> None:
    schedule = KLSchedule("steps", phases=((0, 1e-4), (5000, 1e-3), (10_000, 1e-2)))
    expected = {0: 1e-4, 4999: 1e-4, 5000: 1e-3, 9999: 1e-3, 10_000: 1e-2, 50_000: 1e-2}
    assert {s: schedule.value(s) for s in expected} == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "linear", "warmup_steps": 0},
        {"mode": "steps", "phases": ()},
        {"mode": "steps", "phases": ((10, 1.0),)},
        {"mode": "steps", "phases": ((0, 1.0), (5, 2.0), (5, 3.0))},
    ],
)
def test_schedule_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        KLSchedule(**kwargs)


def test_from_config() -> None:
    cfg = AutoencoderConfig(
        variational=True,
        kl_weight=1e-2,
        kl_schedule={"mode": "linear", "start": 1e-4, "warmup_steps": 10},
    )
    schedule = KLSchedule.from_config(cfg)
    assert schedule.value(0) == pytest.approx(1e-4)
    assert schedule.value(10) == pytest.approx(1e-2)
    stepped = AutoencoderConfig(
        variational=True, kl_schedule={"mode": "steps", "phases": [[0, 1e-4], [100, 1e-3]]}
    )
    assert KLSchedule.from_config(stepped).value(150) == pytest.approx(1e-3)
    assert KLSchedule.from_config(AutoencoderConfig()).value(7) == 0.0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"mode": "steps"}, "non-empty"),
        ({"mode": "steps", "phases": [[5, 1e-3]]}, "step 0"),
        ({"mode": "steps", "phases": [[0, 1e-3], [0, 1e-2]]}, "strictly increasing"),
        ({"mode": "constant", "phases": [[0, 1e-3]]}, "only used by mode 'steps'"),
        ({"mode": "linear"}, "warmup_steps"),
        ({"mode": "cosine"}, "mode"),
        ({"mode": "steps", "phases": [[0, -1.0]]}, "greater than or equal"),
        ({"warmup": 10}, "Extra inputs"),
    ],
)
def test_config_validation(raw: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        KLScheduleConfig(**raw)
