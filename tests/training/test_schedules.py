import keras
import pytest

from faceparsing.config import CHOICES, TrainConfig
from faceparsing.training import schedules


def test_poly_schedule_warms_up_then_decays_to_zero():
    schedule = schedules.WarmupPolyDecay(0.1, total_steps=110, warmup_steps=10)
    rates = [float(schedule(step)) for step in (0, 4, 9, 10, 60, 110, 200)]
    assert rates[0] == pytest.approx(0.01)
    assert rates[1] == pytest.approx(0.05)
    assert rates[2] == pytest.approx(0.1)
    assert rates[3] == pytest.approx(0.1)
    assert rates[4] == pytest.approx(0.1 * 0.5**0.9)
    assert rates[5] == pytest.approx(0.0) and rates[6] == pytest.approx(0.0)


@pytest.mark.parametrize("kind", ["cosine", "constant"])
def test_other_schedules(kind):
    schedule = schedules.WarmupPolyDecay(1.0, total_steps=100, kind=kind)
    middle = float(schedule(50))
    assert middle == pytest.approx(0.5 if kind == "cosine" else 1.0, abs=1e-6)
    clone = schedules.WarmupPolyDecay.from_config(schedule.get_config())
    assert float(clone(50)) == pytest.approx(middle)


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
def test_build_optimizer(name):
    config = TrainConfig(optimizer=name, epochs=2, learning_rate=0.5)
    optimizer = schedules.build_optimizer(config, steps_per_epoch=10)
    assert schedules.current_learning_rate(optimizer) == pytest.approx(0.5)


@pytest.mark.parametrize("optimizer", CHOICES["optimizer"])
def test_every_configurable_optimizer_builds(optimizer):
    built = schedules.build_optimizer(TrainConfig(optimizer=optimizer), steps_per_epoch=10)
    expected = {
        "adamw": keras.optimizers.AdamW,
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
    }
    assert type(built) is expected[optimizer]


@pytest.mark.parametrize(
    ("lr_schedule", "final_rate"), [("poly", 0.0), ("cosine", 0.0), ("constant", 0.1)]
)
def test_every_configurable_schedule_ends_where_it_should(lr_schedule, final_rate):
    assert lr_schedule in CHOICES["lr_schedule"]
    schedule = schedules.WarmupPolyDecay(0.1, total_steps=100, warmup_steps=10, kind=lr_schedule)
    assert float(schedule(10)) == pytest.approx(0.1)
    assert float(schedule(100)) == pytest.approx(final_rate, abs=1e-7)
    assert sorted(CHOICES["lr_schedule"]) == ["constant", "cosine", "poly"]


@pytest.mark.parametrize("lr_schedule", ["poly", "cosine", "constant"])
def test_extending_a_run_keeps_the_learning_rate_continuous(lr_schedule):
    config = TrainConfig(learning_rate=0.1, epochs=30, lr_schedule=lr_schedule, warmup_epochs=1)
    planned = schedules.build_schedule(config, steps_per_epoch=10)
    # Interrupted after epoch 20 of 30, rerun with --epochs=60.
    extended = schedules.build_schedule(config, 10, segments=[[0, 30], [20, 60]])
    before = [float(planned(step)) for step in range(0, 200)]
    assert [float(extended(step)) for step in range(0, 200)] == pytest.approx(before)
    last, first_new = float(extended(199)), float(extended(200))
    end = 0.0 if lr_schedule != "constant" else 0.1
    assert abs(first_new - last) <= 0.02 * max(last, 1e-12)  # no jump
    assert float(extended(600)) == pytest.approx(end, abs=1e-7)
    rates = [float(extended(step)) for step in range(200, 601)]
    assert all(a >= b - 1e-9 for a, b in zip(rates, rates[1:], strict=False))  # decays
    # A second extension goes on from the first one's rate, and survives serialisation.
    twice = schedules.build_schedule(config, 10, segments=[[0, 30], [20, 60], [40, 90]])
    clone = schedules.WarmupPolyDecay.from_config(twice.get_config())
    assert float(clone(400)) == pytest.approx(float(twice(400)))
    assert abs(float(twice(400)) - float(extended(399))) <= 0.02 * float(extended(399)) + 1e-12


def test_extending_a_finished_poly_run_goes_on_from_its_last_rate_not_half_the_peak():
    config = TrainConfig(learning_rate=0.1, epochs=30)
    extended = schedules.build_schedule(config, 10, segments=[[0, 30], [30, 60]])
    last = float(extended(299))
    assert float(extended(300)) <= last < 0.001  # before the fix: 0.1 * 0.5**0.9 = 0.054
