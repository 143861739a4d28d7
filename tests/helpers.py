"""Independent measurements for tests: decode, loudness, true peak, chapters, PDF text, VTT."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyloudnorm
import soundfile as sf
from scipy.signal import resample_poly


def decode(path: Path) -> tuple[np.ndarray, int]:
    """(channels, n) float64 through libsndfile's MP3 decoder (mpg123), not calmplace's code."""
    data, sr = sf.read(io.BytesIO(Path(path).read_bytes()), dtype="float64", always_2d=True)
    return data.T, sr


def integrated_lufs(samples: np.ndarray, sr: int) -> float:
    return float(pyloudnorm.Meter(sr).integrated_loudness(samples.T))


def true_peak_dbtp(samples: np.ndarray) -> float:
    """ITU-R BS.1770-4 Annex 2: 4x oversampling, then the sample peak (an independent re-implementation)."""
    up = resample_poly(samples, 4, 1, axis=-1)
    return float(20 * np.log10(np.max(np.abs(up)) + 1e-12))


def ffmpeg_ebur128(path: Path) -> dict[str, float] | None:
    """Integrated loudness and true peak as ffmpeg's ebur128 filter reports them (None without ffmpeg)."""
    if not shutil.which("ffmpeg"):
        return None
    out = subprocess.run(["ffmpeg", "-nostats", "-hide_banner", "-i", str(path), "-af", "ebur128=peak=true",
                          "-f", "null", "-"], capture_output=True, text=True, check=True).stderr
    summary = out[out.rindex("Summary:"):]
    return {"I": float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1)),
            "LRA": float(re.search(r"LRA:\s+(-?[\d.]+) LU", summary).group(1)),
            "peak": float(re.search(r"Peak:\s+(-?[\d.]+|-inf) dBFS", summary).group(1))}


def ffprobe_chapters(path: Path) -> list[tuple[float, float, str]] | None:
    if not shutil.which("ffprobe"):
        return None
    import json

    out = subprocess.run(["ffprobe", "-v", "error", "-show_chapters", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return [(float(c["start_time"]), float(c["end_time"]), c["tags"]["title"]) for c in json.loads(out)["chapters"]]


def pdf_text(path: Path) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() for page in PdfReader(str(path)).pages)


def window_rms_db(samples: np.ndarray, start: int, stop: int) -> float:
    seg = samples[..., start:stop]
    return float(10 * np.log10(np.mean(seg ** 2) + 1e-20))


def speech_like(seconds: float, *, sr: int, seed: int = 0, first_s: float = 0.5, max_syllables: int = 12,
                max_pause_s: float = 4.0, clicks_at: tuple[int, ...] = ()) -> np.ndarray:
    """Stereo stand-in for a voice: band-limited noise 'syllables' (120-350 ms) in phrases of 4 to
    `max_syllables - 1`, pauses of 1 s to `max_pause_s` between phrases, a quiet brown-noise bed at
    -45 dB, and 3-sample clicks (~20 dB over the speech) at the sample positions `clicks_at`."""
    from scipy.signal import butter, lfilter

    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    voice = np.zeros(n)
    b, a = butter(2, [200, 4000], btype="band", fs=sr)
    pos = int(first_s * sr)
    while pos < n - sr:
        for _ in range(rng.integers(4, max_syllables)):  # one phrase
            length = int(rng.uniform(0.12, 0.35) * sr)
            if pos + length >= n:
                break
            burst = lfilter(b, a, rng.standard_normal(length)) * np.hanning(length)
            voice[pos:pos + length] += burst * rng.uniform(0.3, 1.0)
            pos += length + int(rng.uniform(0.02, 0.1) * sr)
        pos += int(rng.uniform(1.0, max_pause_s) * sr)
    bed = lfilter([1.0], [1.0, -0.995], rng.standard_normal((2, n)), axis=-1)
    x = np.stack([voice, 0.9 * voice]) * 0.1 + bed * (10 ** (-45 / 20) / bed.std())
    for at in clicks_at:
        if 0 <= at < n - 20:
            x[:, at:at + 3] += [[0.9, -0.7, 0.4]]
    return x.astype(np.float32)


def invoke_cli(project: Path, *args: str):
    """`calmplace ARGS` through click's test runner, run in the project folder (the CLI's project
    is the working folder); the working folder is put back after."""
    from click.testing import CliRunner

    from calmplace.cli import main

    cwd = os.getcwd()
    os.chdir(project)
    try:
        return CliRunner().invoke(main, list(args))
    finally:
        os.chdir(cwd)
