import math
import random
import time


from hone.bench.measure import MeasureSettings, measure, median_half_width
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


def test_timings_whose_median_stays_unsettled_hit_the_cap_and_say_so():
    rng = random.Random(0)
    # Two modes of equal weight: the median's interval always spans both, however many calls.
    bimodal = iter(lambda: rng.choice([0.01, 0.03]), None)
    m = measure(lambda: None, FakeTimer(bimodal), batch_size=1, threads=1,
                settings=MeasureSettings(max_time_s=0.3, min_time_s=0.05))
    assert m.noise_warning and "IQR/median" in m.noise_warning and "median within" not in m.noise_warning
    assert m.rel_iqr > 0.05


def test_noisy_timings_stop_once_their_median_is_known_and_still_say_they_were_noisy():
    rng = random.Random(1)
    noisy = iter(lambda: 0.01 * rng.lognormvariate(0, 0.15), None)  # IQR/median about 20 %
    m = measure(lambda: None, FakeTimer(noisy), batch_size=1, threads=1,
                settings=MeasureSettings(max_time_s=30, min_time_s=0.05))
    assert m.rel_iqr > 0.05 and "median within" in m.noise_warning
    assert median_half_width(list(m.times_s)) < 0.02
    assert m.n < 2000  # long before the cap: about 0.3 s of calls at these figures
    assert abs(m.p50 / 0.01 - 1) < 0.03  # lognormal's median is 0.01


def test_median_half_width_follows_the_order_statistics():
    assert median_half_width([1.0] * 9) == math.inf  # too few calls to bound it
    assert median_half_width([1.0] * 50) == 0.0
    spread = [1.0 + i / 100 for i in range(101)]  # uniform 1.00 .. 2.00, median 1.5
    # 0-based ranks 50 -+ 9.85 -> 40 and 60: 1.40 and 1.60
    assert math.isclose(median_half_width(spread), (1.60 - 1.40) / 2 / 1.5)


def test_warm_up_discards_the_slow_start():
    script = [1.0, 1.0, 1.0, 1.0, 1.0] + [0.01] * 100000
    m = measure(lambda: None, FakeTimer(iter(script)), batch_size=1, threads=1,
                settings=MeasureSettings(max_time_s=1, min_time_s=0.05))
    assert m.warmup_calls >= 5 and max(m.times_s) == 0.01


def test_real_timer_measures_a_sleep():
    m = measure(lambda: time.sleep(0.002), PerfCounterTimer(), batch_size=1, threads=1,
                settings=MeasureSettings(max_time_s=1, min_time_s=0.1))
    assert 0.002 <= m.p50 < 0.05


def test_warm_up_of_slow_calls_stops_at_its_cap_inside_a_window():
    from hone.bench.measure import warm_up

    calls = warm_up(lambda: time.sleep(0.05) or 0.05, max_s=0.08)
    assert calls == 2  # not the five of a whole window


def test_a_full_measurement_resumed_from_a_screening_keeps_its_calls_and_does_not_warm_up_again():
    screening = Measurement(times_s=(0.5,) * 5, batch_size=1, threads=1, timer="fake", warmup_calls=3)
    calls = []
    timer = FakeTimer(iter(lambda: 0.5, None))
    m = measure(lambda: calls.append(1), timer, batch_size=1, threads=1, resume=screening,
                settings=MeasureSettings(max_time_s=60, min_time_s=1.0))
    # Ten samples are the minimum: five were the screening's, so five more calls, no warm-up.
    assert m.n == 10 and len(calls) == 5 and m.warmup_calls == 3 and m.times_s[:5] == screening.times_s


def test_a_resumed_measurement_counts_the_screenings_time_against_the_cap():
    screening = Measurement(times_s=(0.5, 1.5) * 5, batch_size=1, threads=1, timer="fake")
    noisy = iter([0.1, 3.0] * 100)
    m = measure(lambda: None, FakeTimer(noisy), batch_size=1, threads=1, resume=screening,
                settings=MeasureSettings(max_time_s=9.0, min_time_s=1.0, median_precision=0.0))
    # The screening's 10 s are past the 9 s cap: one window of new calls, then the cap's warning.
    assert 10 < m.n <= 12 and "after 10." in m.noise_warning
