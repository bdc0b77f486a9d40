"""Pure parts of the harnesses: replica spread, scaling-signal phase summary and verdict, the Prometheus config,
the repository copy without dynamic batching, and the chart threshold. No servers."""
from __future__ import annotations

import json

import pytest

from load_tests.cli import DEFAULT_RAMP_TEXT, parse_ramp, ramp_text
from load_tests.prometheus import ScrapeTarget, config_text
from load_tests.replicas import strip_block, without_dynamic_batching
from load_tests.scaleout import DEFAULT_RAMP, Phase, chart_threshold_us, phase_summary, spread, verdict, CHART


def test_spread_is_even_within_the_tolerance_of_an_equal_share():
    assert spread({"a": 100, "b": 100}, 0.15)["even"]
    s = spread({"a": 110, "b": 90}, 0.15)  # shares 0.55 / 0.45: 10% from 0.5
    assert s["max_deviation"] == pytest.approx(0.10) and s["even"]
    s = spread({"a": 120, "b": 80}, 0.15)  # 20% from an even share
    assert s["max_deviation"] == pytest.approx(0.20) and not s["even"]
    assert not spread({"a": 0, "b": 0}, 0.15)["even"]


def test_phase_summary_and_verdict_follow_the_threshold():
    windows = [{"phase": 0, "concurrency": 4, "start": 0, "end": 10},
               {"phase": 1, "concurrency": 0, "start": 10, "end": 20}]
    signal = [(2, {"p0": 10.0, "p1": 20.0}), (8, {"p0": 90_000.0, "p1": 70_000.0}),
              (14, {"p0": 60_000.0, "p1": 1.0}), (20, {"p0": 0.0, "p1": 0.0})]
    pending = [(8, {"p0": 3.0, "p1": 2.0}), (18, {"p0": 0.0, "p1": 0.0})]
    rows = phase_summary(signal, pending, windows, threshold=50_000)
    assert rows[0]["signal_max_us"] == 90_000 and rows[0]["above_threshold"] and rows[0]["pending_max"] == 5
    assert rows[1]["signal_end_us"] == 0 and rows[1]["signal_max_us"] == 60_000
    spreads = {"requests": spread({"p0": 10, "p1": 10}, 0.15)}
    assert verdict(rows, spreads, 50_000) == {"spread_even": True, "signal_crosses_threshold_under_load": True,
                                              "signal_falls_back_at_idle": True}
    assert not verdict(rows, spreads, 100_000)["signal_crosses_threshold_under_load"]
    still_high = phase_summary(signal[:3], pending, windows, threshold=50_000)
    assert not verdict(still_high, spreads, 50_000)["signal_falls_back_at_idle"]


def test_prometheus_config_labels_every_target_with_its_pod_and_loads_the_rules(tmp_path):
    targets = [ScrapeTarget("triton", "127.0.0.1:1", "triton-0"), ScrapeTarget("triton", "127.0.0.1:2", "triton-1"),
               ScrapeTarget("orchestrator", "127.0.0.1:3", "orchestrator-0")]
    config = json.loads(config_text(targets, [tmp_path / "rules.yaml"], 1.0))
    assert config["rule_files"] == [str(tmp_path / "rules.yaml")]
    assert config["global"]["scrape_interval"] == "1000ms"
    jobs = {j["job_name"]: j["static_configs"] for j in config["scrape_configs"]}
    assert [c["labels"]["pod"] for c in jobs["triton"]] == ["triton-0", "triton-1"]
    assert jobs["orchestrator"][0]["targets"] == ["127.0.0.1:3"]


CONFIG = """name: "m"
max_batch_size: 8
dynamic_batching {
  preferred_batch_size: 4
  default_queue_policy {
    max_queue_size: 64
  }
}
parameters {
  key: "k"
}
"""


def test_strip_block_removes_the_whole_nested_block_and_keeps_the_rest():
    out = strip_block(CONFIG, "dynamic_batching")
    assert "dynamic_batching" not in out and "max_queue_size" not in out
    assert "max_batch_size: 8" in out and 'parameters {\n  key: "k"\n}' in out
    assert strip_block(out, "dynamic_batching") == out


def test_repository_copy_without_dynamic_batching_links_the_model_files(tmp_path):
    repo = tmp_path / "repo"
    (repo / "m" / "1").mkdir(parents=True)
    (repo / "m" / "config.pbtxt").write_text(CONFIG)
    (repo / "m" / "1" / "model.onnx").write_bytes(b"onnx")
    out = without_dynamic_batching(repo, tmp_path / "copy")
    assert "dynamic_batching" not in (out / "m" / "config.pbtxt").read_text()
    assert (out / "m" / "1").is_symlink() and (out / "m" / "1" / "model.onnx").read_bytes() == b"onnx"
    assert "dynamic_batching" in (repo / "m" / "config.pbtxt").read_text()


def test_threshold_comes_from_the_chart_values():
    import yaml

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert chart_threshold_us(CHART / "values.yaml") == values["triton"]["autoscaling"]["queueTimeTargetUs"] > 0


def test_ramp_text_round_trips():
    assert parse_ramp(ramp_text(DEFAULT_RAMP)) == DEFAULT_RAMP
    assert parse_ramp(DEFAULT_RAMP_TEXT) == DEFAULT_RAMP  # the CLI default is the harness default
    assert parse_ramp("0:5,8:30") == (Phase(0, 5), Phase(8, 30))


def test_reaction_times_are_measured_from_the_load_edges():
    from load_tests.scaleout import reaction

    windows = [{"phase": 0, "concurrency": 0, "start": 0, "end": 10},
               {"phase": 1, "concurrency": 4, "start": 10, "end": 40},
               {"phase": 2, "concurrency": 0, "start": 40, "end": 120}]
    signal = [(t, {"p": v}) for t, v in [(5, 0), (20, 10), (26, 80_000), (50, 90_000), (104, 100), (110, 0)]]
    assert reaction(signal, windows, 50_000) == {"up_phase": 1, "up_s": 16.0, "down_s": 64.0}
    assert reaction(signal[:2], windows, 50_000) == {"up_phase": None, "up_s": None, "down_s": None}
    # an idle phase never drives the signal up, even when the value could still describe it
    assert reaction(signal, windows, 50_000, lag_s=16) == {"up_phase": 1, "up_s": 16.0, "down_s": 64.0}


def test_between_two_loaded_phases_a_value_belongs_to_the_phase_running_then():
    from load_tests.scaleout import reaction

    windows = [{"phase": 0, "concurrency": 1, "start": 0, "end": 40},
               {"phase": 1, "concurrency": 4, "start": 40, "end": 80},
               {"phase": 2, "concurrency": 0, "start": 80, "end": 200}]
    signal = [(t, {"p": v}) for t, v in [(30, 3_000), (55, 67_000), (70, 200_000), (90, 210_000), (160, 0)]]
    rows = phase_summary(signal, [], windows, 50_000, lag_s=16)
    assert rows[0]["signal_max_us"] == 3_000 and not rows[0]["above_threshold"]  # c1 stayed below
    assert rows[1]["signal_max_us"] == 210_000  # what was recorded 10 s into the idle phase describes c4
    assert reaction(signal, windows, 50_000, lag_s=16) == {"up_phase": 1, "up_s": 15.0, "down_s": 80.0}


def test_the_last_phase_summary_includes_points_after_its_recorded_end():
    windows = [{"phase": 0, "concurrency": 4, "start": 0, "end": 10},
               {"phase": 1, "concurrency": 0, "start": 10, "end": 20}]
    signal = [(5, {"p": 90_000.0}), (19, {"p": 70_000.0}), (22, {"p": 0.0})]
    assert phase_summary(signal, [], windows, 50_000)[1]["signal_end_us"] == 0


def test_a_value_recorded_after_the_load_ended_is_credited_to_the_load_that_produced_it():
    # The CI trace of a short ramp: the rule's first evaluation with a full queue came 2.4 s after the load stopped.
    from load_tests.scaleout import reaction

    windows = [{"phase": 0, "concurrency": 6, "start": 0, "end": 16},
               {"phase": 1, "concurrency": 0, "start": 16, "end": 78}]
    signal = [(t, {"p": v}) for t, v in [(6, 13_000), (18.4, 287_000), (40, 240_000), (78.4, 0)]]
    spreads = {"requests": spread({"p": 1}, 0.15)}
    without_lag = phase_summary(signal, [], windows, 50_000)
    assert not verdict(without_lag, spreads, 50_000)["signal_crosses_threshold_under_load"]
    with_lag = phase_summary(signal, [], windows, 50_000, lag_s=16)
    assert with_lag[0]["signal_max_us"] == 287_000
    assert verdict(with_lag, spreads, 50_000)["signal_crosses_threshold_under_load"]
    assert verdict(with_lag, spreads, 50_000)["signal_falls_back_at_idle"]
    assert reaction(signal, windows, 50_000, lag_s=16) == {"up_phase": 0, "up_s": 18.4, "down_s": 62.4}
    # the idle phase keeps what it recorded; the fall back is its own
    assert with_lag[1]["signal_end_us"] == 0 and with_lag[1]["signal_max_us"] == 287_000


def test_the_evaluation_lag_comes_from_the_chart_rules():
    from load_tests.scaleout import duration_s, rule_interval_s

    assert rule_interval_s(CHART / "files" / "prometheus-rules.yaml") == 15
    assert duration_s("500ms") == 0.5 and duration_s("2m") == 120
    with pytest.raises(ValueError):
        duration_s("1m30s")


def test_the_webrtc_benchmark_runs_what_it_starts_on_the_cpus_it_is_given():
    import os
    import subprocess

    from load_tests.webrtc import cpu_list, pinned

    assert cpu_list("0") == {0} and cpu_list("0-2") == {0, 1, 2} and cpu_list("0, 2-3") == {0, 2, 3}
    for bad in ("", "a", "3-1", "1-"):
        with pytest.raises(ValueError, match="not a CPU list"):
            cpu_list(bad)
    before = os.sched_getaffinity(0)
    one = {min(before)}
    with pinned(one):
        child = subprocess.Popen(["sleep", "5"])
    try:
        assert os.sched_getaffinity(child.pid) == one  # a process started while pinned stays on those CPUs
        assert os.sched_getaffinity(0) == before  # and this thread is back on its own
    finally:
        child.kill()
        child.wait()


def test_the_webrtc_benchmark_refuses_a_cpu_split_it_cannot_apply(capsys):
    from load_tests.webrtc import main

    for argv, words in ((["--stack-cpus", "1"], "go together"), (["--stack-cpus", "0", "--media-cpus", "0-1"],
                                                                 "must not share"),
                        (["--stack-cpus", "x", "--media-cpus", "0"], "not a CPU list"),
                        (["--stack-cpus", "4096", "--media-cpus", "0"], "may use CPUs"),
                        (["--target", "h:1", "--gateway", "http://h", "--stack-cpus", "1", "--media-cpus", "0"],
                         "started here")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2 and words in capsys.readouterr().err
