"""A picture of a built track, for authors who would rather look than read: speech spans,
pauses, section marks, the ambience gain curve and short-term loudness on one time axis."""

from __future__ import annotations

import io

import numpy as np

from .mix import bed_gain_db, bed_runs
from .timeline import Timeline

_POINTS = 4000  # gain curve resolution: plenty for a page-wide plot of an hour


def plot_track(timeline: Timeline, *, title: str, seed_base: str, short_term_lufs: np.ndarray | None = None,
               target_lufs: float = -16.0, bed_trim_db: float = 0.0) -> bytes:
    """The timeline plot as PNG bytes (deterministic: no timestamps in the file). `bed_trim_db`:
    how far the build put the beds under their level_db (a mostly-ambience track)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sr = timeline.sr
    minutes = timeline.n_samples / sr / 60
    fig, (ax_top, ax_gain) = plt.subplots(2, 1, figsize=(14, 6), sharex=True,
                                          gridspec_kw={"height_ratios": [3, 2]}, dpi=100)
    for span in timeline.takes:
        ax_top.axvspan(span.start / sr / 60, span.end / sr / 60, color="#8fb8a8", alpha=0.45, lw=0)
    for section in timeline.sections:
        x = section.start / sr / 60
        for ax in (ax_top, ax_gain):
            ax.axvline(x, color="#33475b", lw=0.8, ls="--")
        ax_top.text(x, 1.0, f" {section.title or f'Part {section.index + 1}'}", transform=ax_top.get_xaxis_transform(),
                    rotation=30, ha="left", va="bottom", fontsize=8, color="#33475b")
    if short_term_lufs is not None and short_term_lufs.size:
        t = (np.arange(short_term_lufs.size) + 30) * 0.1 / 60  # each 3 s window, at its end
        ax_top.plot(t, np.maximum(short_term_lufs, -70), color="#1f4e79", lw=1.0, label="short-term loudness (3 s)")
        ax_top.axhline(target_lufs, color="#c0504d", lw=0.8, ls=":", label=f"target {target_lufs:g} LUFS")
        ax_top.set_ylim(-70, max(-5, float(np.max(short_term_lufs)) + 3))
        ax_top.legend(loc="lower right", fontsize=8)
    ax_top.set_ylabel("LUFS")
    fig.suptitle(f"{title}: speech (green), sections (dashed)", fontsize=11, x=0.01, ha="left")
    runs = bed_runs(timeline, seed_base=seed_base)
    for run in runs:
        idx = np.linspace(run.start, run.end - 1, num=min(_POINTS, run.end - run.start)).astype(np.int64)
        gain = np.concatenate([bed_gain_db(timeline, run, start=i, stop=i + 1) for i in idx]) + bed_trim_db
        trimmed = f" ({-bed_trim_db:g} dB under level_db: mostly ambience)" if bed_trim_db else ""
        ax_gain.plot(idx / sr / 60, np.maximum(gain, -60), lw=1.0, label=f"{run.ambience.sound} bed{trimmed}")
    ax_gain.set_ylabel("bed gain, dB re voice")
    ax_gain.set_xlabel("minutes")
    ax_gain.set_ylim(-60, 0)
    ax_gain.set_xlim(0, minutes)
    if runs:   # the section lines are no legend's (with no bed, matplotlib warned "no artists with labels")
        ax_gain.legend(loc="lower right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
