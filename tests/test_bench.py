"""tools/bench.py's arithmetic, targets and tables, on made-up numbers (no timing here: the timing
goals live in `make bench`)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

BENCH_PATH = Path(__file__).resolve().parent.parent / "tools" / "bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("calmplace_bench", BENCH_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_realtime_factor_is_audio_seconds_per_wall_second(bench):
    assert bench.realtime_factor(681.0, 34.05) == pytest.approx(20.0)
    assert bench.realtime_factor(600.0, 1200.0) == pytest.approx(0.5)  # slower than real time
    assert math.isinf(bench.realtime_factor(10.0, 0.0))
    assert bench.realtime_factor(None, 1.0) is None and bench.realtime_factor(1.0, None) is None
    assert [bench.fmt_rtf(x) for x in (20.0, 0.5, 1234.5, math.inf, None)] == ["20.0×", "0.50×", "1,234×", "∞", "—"]
    assert [bench.fmt_seconds(s) for s in (0.0123, 2.345, 33.81, None)] == ["12.3 ms", "2.35 s", "33.8 s", "—"]
    assert bench.fmt_clock(681.34) == "11:21"


def test_targets_pass_and_fail_at_their_limits(bench):
    good = bench.evaluate_targets(naive_s=40.0, cold_one_s=20.0, speech_s=3.0, encode_floor_s=14.0,
                                  serial_s=60.0, parallel_s=35.0)
    assert [t.passed for t in good] == [True, True, True]  # 20 <= 0.5*40; 20 <= 1.2*17 = 20.4; 35 < 36
    assert good[0].line().startswith("PASS: cold one-locale build vs naive")
    assert "0.50 × naive 40.00 s" in good[0].detail

    bad = bench.evaluate_targets(naive_s=18.0, cold_one_s=33.0, speech_s=2.8, encode_floor_s=9.6,
                                 serial_s=66.0, parallel_s=39.6)
    assert [t.passed for t in bad] == [False, False, False]  # 39.6 is exactly 0.6 x 66: not *under* it
    assert all(t.line().startswith("FAIL: ") for t in bad)
    assert "1.83 × naive" in bad[0].detail and "2.66 × (speech + encode) 12.40 s" in bad[1].detail

    missing = bench.evaluate_targets(naive_s=None, cold_one_s=33.0, speech_s=2.8, encode_floor_s=None,
                                     serial_s=66.0, parallel_s=30.0)
    assert [t.passed for t in missing] == [None, None, True]
    assert missing[0].line().startswith("SKIP: ")


def test_targets_judge_the_median_of_the_rounds_ratios(bench):
    """Each round's build against that round's own references: the median ratio decides, every round's
    is printed, and a round missing a side is left out."""
    targets = bench.evaluate_targets(
        naive_s=[19.0, 20.0, None, 18.0, 19.0], cold_one_s=[7.5, 7.6, 7.4, 8.0, 7.2],
        speech_s=[0.8, 0.8, 0.8, 0.8, 0.8], encode_floor_s=[5.5, 6.6, 5.2, 6.0, None],
        serial_s=[22.0, 23.0, 20.0, 22.0, 24.0], parallel_s=[13.0, 13.5, 13.0, 13.2, 14.5])
    vs_naive, vs_floor, parallel = targets
    # naive: rounds 1, 2, 4 and 5 (round 3 has no naive run)
    assert vs_naive.passed and "the median of 4 rounds" in vs_naive.detail
    assert "round by round 0.395, 0.380, 0.444, 0.379: 4 of 4 within the target" in vs_naive.detail
    # 7.5/6.3 = 1.190, 7.6/7.4 = 1.027, 7.4/6.0 = 1.233, 8.0/6.8 = 1.176: median (1.176 + 1.190) / 2
    assert vs_floor.passed and "build = 1.183 × (speech + encode), the median of 4 rounds" in vs_floor.detail
    assert "1.190, 1.027, 1.233, 1.176: 3 of 4 within" in vs_floor.detail
    # 0.591, 0.587, 0.650, 0.600, 0.604: median 0.600 is not *under* 0.6, though it rounds to it
    assert parallel.passed is False and "0.591, 0.587, 0.650, 0.600, 0.604: 2 of 5 within" in parallel.detail
    assert bench.evaluate_targets(naive_s=[None], cold_one_s=[7.0], speech_s=[None], encode_floor_s=[5.0],
                                  serial_s=None, parallel_s=None)[1].passed is None


def test_markdown_table_is_aligned_and_checked(bench):
    table = bench.md_table(["Stage", "Wall"], [["mix", "7.23 s"], ["captions", "10.9 ms"]], "lr")
    lines = table.splitlines()
    assert lines[0] == "| Stage    |    Wall |"
    assert lines[1] == "|:---------|--------:|"
    assert lines[3] == "| captions | 10.9 ms |"
    assert len({len(line) for line in lines}) == 1
    with pytest.raises(ValueError):
        bench.md_table(["a", "b"], [["only one"]])


def test_report_renders_every_table_and_target(bench):
    targets = bench.evaluate_targets(naive_s=18.0, cold_one_s=8.0, speech_s=3.0, encode_floor_s=4.0,
                                     serial_s=20.0, parallel_s=13.0)
    data = {
        "title": "calmplace bench", "notes": ["2 CPUs"],
        "scripts": [{
            "id": "demo", "locale": "en-GB", "locales": ["en-GB", "en-US"], "duration_s": 600.0,
            "stages": {"script": {"wall_s": 0.01, "peak_mib": 37.0, "delta_mib": 0.1},
                       "speech": {"wall_s": 3.0, "cpu_s": 2.5, "peak_mib": 180.0, "delta_mib": 70.0},
                       "mix": {"error": "boom"},
                       "encode": {"wall_s": 4.0, "peak_mib": 380.0, "delta_mib": 38.0}},
            "builds": [{"label": "cold build, en-GB, jobs=1", "tracks": 1, "audio_s": 600.0, "wall_s": 8.0,
                        "process_s": 9.0, "cpu_s": 8.5, "rss_mib": 650.0, "tree_mib": 640.0},
                       {"label": "warm no-op", "tracks": 0, "audio_s": 1200.0, "wall_s": None, "process_s": 1.2,
                        "rss_mib": 80.0, "tree_mib": None, "rtf": False}],
            "build_timings": {"speech": 3.1, "mix": 2.0},
            "naive": {"wall_s": 18.0, "process_s": 18.5, "audio_s": 620.0, "rss_mib": 577.0, "tree_mib": 516.0,
                      "parts": {"speech (pyttsx3)": 0.7, "export (ffmpeg, 192k)": 13.7},
                      "integrated_lufs": -9.87, "true_peak_dbtp": 0.42},
            "speech_reference": {"wall_s": 2.9}, "floor": {"wall_s": 4.1, "cpu_s": 4.1, "peak_mib": 381.0},
            "targets": targets,
        }],
    }
    text = bench.render_report(data)
    assert text.startswith("## calmplace bench\n\n- 2 CPUs\n")
    assert "### `demo`, en-GB: 10:00 per track (en-GB, en-US)" in text
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| ")}
    assert rows[bench.STAGE_LABELS["speech"]] == ["3.00 s", "2.50 s", "200×", "180", "70"]
    assert rows[bench.STAGE_LABELS["mix"]] == ["error", "—", "—", "—", "—"]
    assert rows["cold build, en-GB, jobs=1"] == ["1", "10:00", "8.00 s", "9.00 s", "8.50 s", "75.0×", "650", "640"]
    assert rows["warm no-op"][2:7] == ["—", "1.20 s", "—", "—", "80"]
    assert rows["reference (b): naive pyttsx3 + pydub, en-GB"][5] == "34.4×"
    # the references the targets use were measured in turn with the builds, not in the stage runs
    assert rows["reference (a): encoder floor, en-GB"][2] == "4.10 s"
    assert "which the targets use: speech (jobs=1) 2.90 s, encoder floor 4.10 s." in text
    assert "Its MP3 measures -9.9 LUFS, true peak +0.4 dBTP" in text
    assert "- PASS: cold one-locale build vs naive" in text
    assert "- PASS: cold one-locale build vs speech + encoder floor" in text
    assert "- FAIL: every locale, jobs=2 vs jobs=1" in text  # 13 s is 0.65 x 20 s


def test_noise_note_flags_a_shared_machine(bench):
    busy = bench.noise_note(others_cpu_s=120.0, elapsed_s=300.0, cpus=2, load_before=2.1)
    assert "other processes used 120 CPU-seconds, 20% of the machine's 600" in busy and "noisy" in busy
    quiet = bench.noise_note(others_cpu_s=-3.0, elapsed_s=300.0, cpus=2, load_before=0.1)
    assert "used 0 CPU-seconds, 0%" in quiet and "noisy" not in quiet


def test_the_memory_sampler_runs_only_when_asked(bench):
    """Timed jobs=2 builds run without the tree-PSS sampler (its /proc reads cost about 25 ms of CPU
    each, which a build keeping both CPUs busy would wait for); memory runs sample."""
    holds_80_mib = [sys.executable, "-c",
                    "import time; b = bytearray(80 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.0)"]
    sampled = bench.run_process(holds_80_mib)
    assert sampled.returncode == 0
    # 80 MiB touched, held for 1 s, sampled every 0.25 s: the peak sees all of it (the interpreter
    # adds a few MiB more)
    assert sampled.tree_mib is not None and sampled.tree_mib >= 80
    quiet = bench.run_process(holds_80_mib, sample_memory=False)
    assert quiet.returncode == 0 and quiet.tree_mib is None
    assert quiet.rss_mib >= 80   # wait4's peak RSS needs no sampler
