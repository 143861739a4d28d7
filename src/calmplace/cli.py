"""The `calmplace` command: click commands, options and exit codes; no audio work here.

Exit status (contract §6): 0 success; 1 bad input or a failed build, after every problem is
reported; 2 wrong usage (click's own).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import numpy as np

from . import __version__
from .build import Report, Settings, build, gather
from .build import voiceless as voiceless_locales
from .cli_takes import voice_name_option
from .errors import CalmplaceError, WordedErrors, os_problem
from .script import Project, find_project
from .voices import load_fallback


class UI:
    """Progress and messages on stderr, so stdout stays clean for piping."""

    def __init__(self, verbosity: int):
        self.verbosity = verbosity

    def info(self, message: str) -> None:
        if self.verbosity >= 0:
            click.echo(message, err=True)

    def detail(self, message: str) -> None:
        if self.verbosity >= 1:
            click.echo(message, err=True)

    def progress(self, label: str, total: int):
        if self.verbosity < 0:
            from .build import _NullProgress

            return _NullProgress()
        return click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True)


class _Folder(click.Path):
    """A folder option; an empty value (`--out ''`) is a usage error, not the working folder."""

    def __init__(self):
        super().__init__(file_okay=False, path_type=Path)

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("must not be empty (give a folder, e.g. build)", param, ctx)
        return super().convert(value, param, ctx)


def _project(scripts: tuple[str, ...] = ()) -> Project:
    """The project in the current folder; a message and exit 1 when it is not one but the folder
    to run in is plain (a folder above it, or above a named script)."""
    try:
        return find_project(Path.cwd(), scripts)
    except CalmplaceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def _print_problems(report: Report) -> None:
    for message in report.problems:
        click.echo(message, err=True)


EXIT_INTERRUPTED = 130   # 128 + SIGINT: what shells, make and CI runners read as "interrupted"


class _Commands(click.Group):
    """Click's group, but Ctrl-C exits 130, not 1: an interrupted build is not a failed one."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo(err=True)
            click.echo("Aborted!", err=True)
            ctx.exit(EXIT_INTERRUPTED)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="calmplace")
@click.option("-v", "--verbose", count=True, help="Say more (per-track and per-stage details).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Turn guided-imagery scripts (scripts/<id>.yaml) into mastered MP3s, PDF scripts and captions."""
    ctx.obj = UI(-1 if quiet else verbose)


@main.command("build")
@click.argument("scripts", nargs=-1)
@click.option("--locale", "locales", multiple=True, metavar="L", help="Only this locale (repeatable).")
@click.option("--voice", metavar="NAME", callback=voice_name_option,
              help="Use voices/NAME.yaml instead of each script's voice.")
@click.option("--out", "out_dir", type=_Folder(), default=Path("build"),
              show_default=True, help="Output folder.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Parallel workers [default: CPUs].")
@click.option("--force", is_flag=True, help="Ignore the caches: speak every take and rebuild every output.")
@click.option("--fallback-tts", is_flag=True,
              help="Recorded voices: speak missing takes with the synthetic voice (the profile's `fallback:`, "
                   "default narrator) instead of failing.")
@click.option("--check", "check_only", is_flag=True,
              help="Build nothing; exit 1 listing every output that is missing or stale (for CI).")
@click.option("--cache-dir", type=_Folder(), envvar="CALMPLACE_CACHE",
              help="Where spoken takes are cached [default: OUT/.cache; env CALMPLACE_CACHE].")
@click.option("--loudness", "target_lufs", type=click.FloatRange(-30, -10), default=-16.0, show_default=True,
              help="Integrated loudness target, LUFS.")
@click.option("--fake-speech", is_flag=True, hidden=True, help="Tests only: a fast stand-in speech engine.")
@click.pass_obj
def build_cmd(ui: UI, scripts: tuple[str, ...], locales: tuple[str, ...], voice: str | None, out_dir: Path,
              jobs: int | None, force: bool, fallback_tts: bool, check_only: bool, cache_dir: Path | None, target_lufs: float,
              fake_speech: bool) -> None:
    """Build SCRIPTS (ids or paths; all of scripts/ when none) for every locale."""
    settings = Settings(voice=voice, target_lufs=target_lufs, fallback_tts=fallback_tts)
    kwargs = {}
    if fake_speech:
        from .speech.fake import FakeEngine

        kwargs["engine_factory"] = lambda profile: FakeEngine()
    try:
        report = build(_project(scripts), scripts, locales=locales, out_dir=out_dir, cache_dir=cache_dir,
                       settings=settings,
                       jobs=jobs or os.cpu_count() or 1, force=force, check_only=check_only, ui=ui, **kwargs)
    except CalmplaceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:   # a file that could not be written (the disk full...), worded as every command words it
        click.echo(f"error: cannot write {os_problem(exc)}", err=True)
        sys.exit(1)
    _print_problems(report)
    if ui.verbosity >= 1 and report.timings_s:
        ui.detail("stage times: " + ", ".join(f"{k} {v:.2f}s" for k, v in report.timings_s.items()))
    ui.info(report.summary())
    sys.exit(report.exit_code)


@main.command("clean")
@click.option("--out", "out_dir", type=_Folder(), default=Path("build"),
              show_default=True)
@click.option("--cache-dir", type=_Folder(), envvar="CALMPLACE_CACHE")
@click.option("--unused", is_flag=True,
              help="Only the takes no script uses now (what `calmplace build` of every script would read); "
                   "for a CI cache that would otherwise only grow.")
@click.pass_obj
def clean_cmd(ui: UI, out_dir: Path, cache_dir: Path | None, unused: bool) -> None:
    """Remove the cached takes (outputs, and other files in the cache folder, stay)."""
    from .build import clean, takes_in_use

    cache = cache_dir if cache_dir is not None else out_dir / ".cache"
    try:
        keep = None
        if unused:
            project = _project(())
            keep = lambda: takes_in_use(project)   # noqa: E731 - called once the cache is locked
        removed = clean(out_dir, cache_dir, project_root=Path.cwd(), ui=ui, keep=keep)
    except CalmplaceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"error: cannot remove {os_problem(exc)}", err=True)
        sys.exit(1)
    n = sum(p.suffix == ".npy" for p in removed)   # the rest: unfinished files a stopped build left
    what = "unused cached take" if unused else "cached take"
    left = len(removed) - n
    parts = [f"{n} {what}{'s' if n != 1 else ''}"] if n else []
    parts += [f"{left} unfinished file{'s' if left != 1 else ''} a stopped build left"] if left else []
    ui.info(f"removed {' and '.join(parts)} from {cache}/" if removed else "nothing to remove")


@main.command("check")
@click.argument("scripts", nargs=-1)
@click.pass_obj
def check_cmd(ui: UI, scripts: tuple[str, ...]) -> None:
    """Validate SCRIPTS (all of scripts/ when none) without building; every problem as path:line:col."""
    project = _project(scripts)
    jobs, problems = gather(project, scripts)
    problems += voiceless_locales(jobs)
    for message in problems:
        click.echo(message, err=True)
    if problems:   # QA: a failing check said nothing of the scripts that passed
        bad = {m.split(":")[0] for m in problems}
        good = {str(j.script.path) for j in jobs} - bad
        ui.info(f"{len(bad)} script{'s' if len(bad) != 1 else ''} with errors"
                + (f", {len(good)} OK" if good else ""))
        sys.exit(1)
    for profile in {j.profile.name: j.profile for j in jobs}.values():
        # not an error (only `build --fallback-tts` needs it), but better heard before the session
        _, why = load_fallback(profile, voices_dir=project.voices_dir)
        if why:
            click.echo(f"warning: {why}; `build --fallback-tts` cannot fill missing takes", err=True)
    n = len({j.script.id for j in jobs})
    ui.info(f"{n} script{'s' if n != 1 else ''} OK")


@main.command("voices")
@click.option("--locale", metavar="L", help="Only voices for this locale (e.g. en-GB).")
def voices_cmd(locale: str | None) -> None:
    """List the text-to-speech voices installed on this system."""
    from .speech.tts import system_voices

    try:
        voices = system_voices()
    except CalmplaceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    others: list = []
    if locale:
        want = locale.lower()
        lang = want.split("-")[0]
        voices = [v for v in voices if any(l.lower() == want or l.lower().split("-")[0] == lang for l in v.languages)]
        # the locale's own voices (en-GB, en-GB-x-rp...) first, the language's others after (author
        # QA: en-GB listed the Caribbean and American voices among the British ones)
        mine = [v for v in voices if any(l.lower() == want or l.lower().startswith(want + "-") for l in v.languages)]
        if mine and len(mine) < len(voices):
            voices, others = mine, [v for v in voices if v not in mine]
    for v in voices:
        click.echo(f"{v.id:28} {', '.join(v.languages):18} {v.name}")
    if others:
        click.echo(f"other {lang} voices:")
        for v in others:
            click.echo(f"  {v.id:26} {', '.join(v.languages):18} {v.name}")
    if not voices:
        click.echo(f"no installed voices{' for ' + locale if locale else ''}", err=True)
        sys.exit(1)


@main.command("plot")
@click.argument("script")
@click.option("--locale", metavar="L", help="Which locale's track [default: the script's first].")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="PNG file [default: build/<locale>/<id>-timeline.png].")
@click.pass_obj
def plot_cmd(ui: UI, script: str, locale: str | None, out_file: Path | None) -> None:
    """Draw the built track's timeline: speech, pauses, sections, bed gain, short-term loudness."""
    from .build import Manifest, track_timeline
    from .master import short_term_lufs
    from .plot import plot_track

    try:
        item, timeline = track_timeline(_project((script,)), script, locale, ui=ui)
        job, the_plan = item.job, item.plan
        mp3 = Path("build") / job.locale / f"{job.script.id}.mp3"
        loudness, trim_db = None, 0.0
        if mp3.is_file():
            import soundfile as sf

            info = sf.info(str(mp3))
            if info.frames != timeline.n_samples:   # built from an earlier script: its loudness would not line up
                ui.info(f"{mp3} is out of date ({info.duration:.2f} s long; the script now makes "
                        f"{timeline.duration_s:.2f} s): plotting without its loudness (run calmplace build first)")
            else:
                manifest = Manifest(Path("build") / "manifest.json")
                current = manifest.up_to_date({"mp3": mp3}, out_dir=Path("build"), key=item.output_key)
                # the beds' level as the build set it (a mostly-ambience track's are lower)
                trim = manifest.entry(mp3.relative_to("build").as_posix()).get("bed_trim_db", 0.0)
                trim_db = float(trim) if isinstance(trim, (int, float)) and current else 0.0
                if not current:   # the same length: an edit that moved nothing, or a build with --loudness
                    ui.info(f"note: {mp3} was built from another version of the script or with other options; "
                            f"its loudness is drawn as it is")
                samples, sr = sf.read(mp3, dtype="float32", always_2d=True)
                loudness = short_term_lufs(samples.T, sr=sr)
        else:
            ui.info(f"{mp3} is not built yet: plotting without its loudness (run calmplace build first)")
        png = plot_track(timeline, title=f"{the_plan.title} ({job.locale})", seed_base=job.script.id,
                         short_term_lufs=loudness, bed_trim_db=trim_db)
    except WordedErrors as exc:   # a script's problems, "path:line:col: error: ..." already
        click.echo(str(exc), err=True)
        sys.exit(1)
    except CalmplaceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    out_file = out_file or Path("build") / job.locale / f"{job.script.id}-timeline.png"
    _write_file(out_file, png, what="the plot", ui=ui)
    ui.info(f"wrote {out_file}")


def _write_file(path: Path, data: bytes, *, what: str, ui: UI) -> None:
    """Write a command's file atomically; inside build/ under the build lock (a build starting
    meanwhile sweeps temp files there). An OS error is a message and exit 1."""
    from .build import BuildLock, _is_within
    from .fsio import atomic_write

    try:
        with BuildLock(Path("build"), ui=ui, enabled=_is_within(path.absolute(), Path("build").absolute())):
            atomic_write(path, data)
    except OSError as exc:
        click.echo(f"error: cannot write {what}: {os_problem(exc)}", err=True)
        sys.exit(1)


@main.group("ambience")
def ambience_group() -> None:
    """The soundscapes: built-ins generated in code, and files in ambience/."""


@ambience_group.command("list")
def ambience_list() -> None:
    """Names and one-line descriptions of the built-in soundscapes and the files in ambience/."""
    from .ambience import BUILTINS
    from .ambience import AUDIO_SUFFIXES

    for name, text in BUILTINS.items():
        click.echo(f"{name:10} {text}")
    folder = Project(Path.cwd()).ambience_dir   # built-ins are listed anywhere
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES) \
        if folder.is_dir() else []
    for path in files:
        click.echo(f"{path.relative_to(folder).as_posix():10} (file in ambience/)")


@ambience_group.command("preview")
@click.argument("name")
@click.option("--seconds", type=click.FloatRange(1, 600), default=30.0, show_default=True)
@click.option("--level-db", type=click.FloatRange(-60, 0), default=0.0, show_default=True,
              help="Bed level; the preview is mastered like a track either way.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="MP3 file [default: build/ambience/NAME.mp3].")
@click.pass_obj
def ambience_preview(ui: UI, name: str, seconds: float, level_db: float, out_file: Path | None) -> None:
    """Render NAME alone (fades included) to an MP3, to hear a bed before using it."""
    from . import SR
    from .ambience import render_bed
    from .encode import Tags, master_to_mp3
    from .units import db_to_gain, seconds_to_samples

    if out_file is not None and out_file.suffix.lower() != ".mp3":   # MP3 bytes in a .wav would not play
        click.echo(f"error: --out {out_file}: the preview is an MP3; name it {out_file.with_suffix('.mp3')}",
                   err=True)
        sys.exit(2)   # a command given wrongly (contract §6)
    try:
        n = seconds_to_samples(seconds, sr=SR)
        bed = render_bed(name, n_samples=n, sr=SR, seed=1, ambience_dir=Project(Path.cwd()).ambience_dir)
        fade = min(n // 4, seconds_to_samples(2.0, sr=SR))
        ramp = np.sin(0.5 * np.pi * np.linspace(0, 1, fade, dtype=np.float32))
        bed *= np.float32(db_to_gain(level_db))
        bed[:, :fade] *= ramp
        bed[:, n - fade:] *= ramp[::-1]
        # mastered to -23 LUFS (the bed's own reference), not -16: a bed alone should sound as it will under a voice
        mp3, measured = master_to_mp3(bed, sr=SR, target_lufs=-23.0, tags=Tags(title=f"calmplace ambience: {name}"))
    except CalmplaceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    out_file = out_file or Path("build") / "ambience" / f"{Path(name).stem}.mp3"
    _write_file(out_file, mp3, what="the preview", ui=ui)
    ui.info(f"wrote {out_file} ({seconds:g} s, {measured.integrated_lufs:.1f} LUFS)")


from .cli_takes import takes as takes_group, template as template_cmd  # noqa: E402

main.add_command(template_cmd)
main.add_command(takes_group)
