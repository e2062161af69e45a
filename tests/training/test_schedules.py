import pytest

from faceparsing.config import TrainConfig
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
