"""The `calmplace` command: click commands, options and exit codes; no audio work here.

Exit status (contract §6): 0 success; 1 bad input or a failed build, after every problem is
reported; 2 wrong usage (click's own).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from . import __version__
from .build import Report, Settings, build, gather
from .errors import CalmplaceError
from .script import Project


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


def _project() -> Project:
    return Project(Path.cwd())


def _print_problems(report: Report) -> None:
    for message in report.problems:
        click.echo(message, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--voice", metavar="NAME", help="Use voices/NAME.yaml instead of each script's voice.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("build"),
              show_default=True, help="Output folder.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Parallel workers [default: CPUs].")
@click.option("--force", is_flag=True, help="Ignore the caches: speak every take and rebuild every output.")
@click.option("--check", "check_only", is_flag=True,
              help="Build nothing; exit 1 listing every output that is missing or stale (for CI).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), envvar="CALMPLACE_CACHE",
              help="Where spoken takes are cached [default: OUT/.cache; env CALMPLACE_CACHE].")
@click.option("--loudness", "target_lufs", type=click.FloatRange(-30, -10), default=-16.0, show_default=True,
              help="Integrated loudness target, LUFS.")
@click.option("--fake-speech", is_flag=True, hidden=True, help="Tests only: a fast stand-in speech engine.")
@click.pass_obj
def build_cmd(ui: UI, scripts: tuple[str, ...], locales: tuple[str, ...], voice: str | None, out_dir: Path,
              jobs: int | None, force: bool, check_only: bool, cache_dir: Path | None, target_lufs: float,
              fake_speech: bool) -> None:
    """Build SCRIPTS (ids or paths; all of scripts/ when none) for every locale."""
    settings = Settings(voice=voice, target_lufs=target_lufs)
    kwargs = {}
    if fake_speech:
        from .speech.fake import FakeEngine

        kwargs["engine_factory"] = lambda profile: FakeEngine()
    try:
        report = build(_project(), scripts, locales=locales, out_dir=out_dir, cache_dir=cache_dir, settings=settings,
                       jobs=jobs or os.cpu_count() or 1, force=force, check_only=check_only, ui=ui, **kwargs)
    except CalmplaceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    _print_problems(report)
    if ui.verbosity >= 1 and report.timings_s:
        ui.detail("stage times: " + ", ".join(f"{k} {v:.2f}s" for k, v in report.timings_s.items()))
    ui.info(report.summary())
    sys.exit(report.exit_code)


@main.command("clean")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("build"),
              show_default=True)
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), envvar="CALMPLACE_CACHE")
@click.pass_obj
def clean_cmd(ui: UI, out_dir: Path, cache_dir: Path | None) -> None:
    """Remove the take cache (outputs stay)."""
    from .build import clean

    removed = clean(out_dir, cache_dir)
    ui.info(f"removed {removed[0]}" if removed else "nothing to remove")


@main.command("check")
@click.argument("scripts", nargs=-1)
@click.pass_obj
def check_cmd(ui: UI, scripts: tuple[str, ...]) -> None:
    """Validate SCRIPTS (all of scripts/ when none) without building; every problem as path:line:col."""
    jobs, problems = gather(_project(), scripts)
    for message in problems:
        click.echo(message, err=True)
    if problems:
        sys.exit(1)
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
    if locale:
        want = locale.lower()
        lang = want.split("-")[0]
        voices = [v for v in voices if any(l.lower() == want or l.lower().split("-")[0] == lang for l in v.languages)]
    for v in voices:
        click.echo(f"{v.id:28} {', '.join(v.languages):18} {v.name}")
    if not voices:
        click.echo(f"no installed voices{' for ' + locale if locale else ''}", err=True)
        sys.exit(1)
