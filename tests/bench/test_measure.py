import math
import random
import time


from hone.bench.measure import MeasureSettings, measure
from hone.bench.measurement import Measurement
from hone.bench.timers import PerfCounterTimer


class FakeTimer:
    """Returns scripted latencies: tests the stopping rules without depending on machine noise."""

    name = "fake"

    def __init__(self, times):
        self._times = iter(times)

    def time_call(self, fn):
        fn()
        return next(self._times)


def test_statistics_from_raw_times():
    m = Measurement(times_s=(1.0, 2.0, 3.0, 4.0, 5.0), batch_size=10, threads=1, timer="x")
    assert m.p50 == 3.0 and m.mean == 3.0
    assert math.isclose(m.p90, 4.6) and math.isclose(m.iqr, 2.0)
    assert math.isclose(m.throughput, 10 / 3.0)


def test_round_trip_keeps_raw_times():
    m = Measurement(times_s=(0.1, 0.2), batch_size=1, threads=2, timer="perf_counter", build_s=1.5, noise_warning="w")
    back = Measurement.from_dict(m.to_dict())
    assert back == m and back.p50 == m.p50


def test_stable_timings_stop_with_no_warning():
    m = measure(lambda: None, FakeTimer(iter(lambda: 0.01, None)), batch_size=1, threads=1,
                settings=MeasureSettings(max_time_s=5, min_time_s=0.05))
    assert m.noise_warning is None and m.n >= 10 and m.p50 == 0.01


def test_noisy_timings_hit_the_cap_and_say_so():
    rng = random.Random(0)
    noisy = iter(lambda: rng.choice([0.01, 0.02, 0.04]), None)
    m = measure(lambda: None, FakeTimer(noisy), batch_size=1, threads=1,
                settings=MeasureSettings(max_time_s=0.3, min_time_s=0.05))
    assert m.noise_warning and "IQR/median" in m.noise_warning
    assert m.rel_iqr > 0.05


def test_warm_up_discards_the_slow_start():
    script = [1.0, 1.0, 1.0, 1.0, 1.0] + [0.01] * 100000
    m = measure(lambda: None, FakeTimer(iter(script)), batch_size=1, threads=1,
                settings=MeasureSettings(max_time_s=1, min_time_s=0.05))
    assert m.warmup_calls >= 5 and max(m.times_s) == 0.01


def test_real_timer_measures_a_sleep():
    m = measure(lambda: time.sleep(0.002), PerfCounterTimer(), batch_size=1, threads=1,
                settings=MeasureSettings(max_time_s=1, min_time_s=0.1))
    assert 0.002 <= m.p50 < 0.05
