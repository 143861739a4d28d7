"""Commands for recording one's own voice: `calmplace template`, `calmplace takes status|rename|split`.

Registered on the main group with `main.add_command(template)` and `main.add_command(takes)`.
Same conventions as cli.py: problems on stderr as "error: ...", exit status 1 for bad input,
2 for wrong usage (click's own); results on stdout.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
import click

from . import SR
from .build import Job, Settings, TakeCache, gather
from .errors import CalmplaceError, os_problem
from .script import Project, find_project
from .takes import Plan, plan
from .voices import DEFAULT_RATE_WPM, VoiceProfile, load_fallback, load_voice


def _project(script: str | None = None) -> Project:
    """The project in the current folder (script.find_project): a message and exit 1 when the
    folder to run in is elsewhere."""
    try:
        return find_project(Path.cwd(), (script,) if script else ())
    except CalmplaceError as exc:
        _fail(str(exc))


def _info(message: str) -> None:
    """Progress and notes on stderr, unless the main group was asked to be quiet (-q)."""
    ctx = click.get_current_context(silent=True)
    ui = ctx.find_root().obj if ctx else None
    if getattr(ui, "verbosity", 0) >= 0:
        click.echo(message, err=True)


def _fail(message: str, *, usage: bool = False) -> None:
    """The message, and exit 1; or 2 for a command given wrongly (`usage`, contract §6)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2 if usage else 1)


def voice_name_option(ctx, param, value: str | None) -> str | None:
    """--voice: a name a voice's file and folder can have (letters, digits, '-', '_': no spaces, no
    path), else a usage error (exit 2)."""
    import re

    from .script import voice_name_hint

    if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", value):
        raise click.BadParameter(voice_name_hint(value))
    return value


def _jobs(script: str, locales: tuple[str, ...], voice: str | None) -> list[Job]:
    """Load and validate one script (and the voice, when named) like `calmplace build` does."""
    jobs, problems = gather(_project(script), (script,), locales=locales, settings=Settings(voice=voice))
    for message in problems:
        click.echo(message, err=True)
    if problems:
        sys.exit(1)
    return jobs


def _cache_root(project: Project) -> Path:
    env = os.environ.get("CALMPLACE_CACHE")
    return Path(env) if env else project.root / "build" / ".cache"


def _synthetic(profile: VoiceProfile, *, voices_dir: Path) -> tuple[VoiceProfile | None, str | None]:
    """The text-to-speech voice that stands for a voice (itself, or a recorded voice's fallback),
    and why there is none (said once, as a warning): "voices/maria.yaml: fallback voice 'ghost' not
    found (voices/ghost.yaml)"."""
    tts, why = load_fallback(profile, voices_dir=voices_dir)
    if why:
        click.echo(f"warning: {why}; expected take lengths come from the word count instead, and "
                   f"`build --fallback-tts` cannot fill missing takes", err=True)
        return None, "no usable fallback voice: see the warning above"
    return tts, None


def expected_lengths(the_plan: Plan, profile: VoiceProfile | None, *, cache_root: Path,
                     jobs: int | None = None, why: str | None = None) -> tuple[list[float], str]:
    """Each take's expected length in seconds, and where the numbers come from.

    From the synthetic voice when it can speak (its clips go into, and come from, the build's take
    cache, so a template after a build costs nothing); else from the words at the voice's rate
    (`why`: why there is no synthetic voice, for the source)."""
    takes = the_plan.takes
    rate = profile.rate_wpm if profile else DEFAULT_RATE_WPM
    reason = why or "no text-to-speech voice to time the takes with"
    if profile is not None:
        from .speech.tts import TtsEngine

        engine = TtsEngine(profile)
        cache = TakeCache(cache_root)
        try:
            keys = engine.take_keys(takes, script_id=the_plan.script_id, locale=the_plan.locale, sr=SR)
            clips = [cache.get(k) for k in keys]
            todo = [i for i, c in enumerate(clips) if c is None]
            if todo:
                fresh = engine.speak([takes[i] for i in todo], script_id=the_plan.script_id, locale=the_plan.locale,
                                     sr=SR, jobs=jobs or os.cpu_count() or 1)
                for i, clip in zip(todo, fresh):
                    clips[i] = clip
                    try:
                        cache.put(keys[i], clip)
                    except OSError:  # only a saving for next time (build/.cache not writable)
                        pass
            return [c.size / SR for c in clips], f"the synthetic voice {profile.name!r}"
        except CalmplaceError as exc:
            reason = str(exc).splitlines()[0]
    from .speech.recorded import words_s

    return ([words_s(t, rate) for t in takes],
            f"words at {rate} words a minute ({reason})")


# ------------------------------------------------------------------------------------------------
# calmplace template

_PLACEHOLDER = "yourname"   # the voice a template names when it is given a text-to-speech one


@click.command("template")
@click.argument("script")
@click.option("--locale", "locales", multiple=True, metavar="L", help="Only this locale (repeatable).")
@click.option("--voice", metavar="NAME", callback=voice_name_option,
              help="The recorded voice the takes are for [default: the script's voice].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("build"),
              show_default=True, help="Output folder (templates go in OUT/templates/<locale>/).")
def template(script: str, locales: tuple[str, ...], voice: str | None, out_dir: Path) -> None:
    """Write the recording template for SCRIPT: a PDF to read from and a CSV of the takes.

    Every take is listed with the file it goes into (voices/NAME/<script>/<locale>/NNN.wav), its
    text, the pauses around it and its expected length."""
    from .fsio import atomic_write
    from .pdf import takes_csv, template_pdf

    project = _project(script)
    jobs = _jobs(script, locales, None)  # the voice need not exist yet: its profile is made after recording
    voice_name = voice or jobs[0].script.voice
    profile = jobs[0].profile
    if voice:
        try:
            profile = load_voice(voice, voices_dir=project.voices_dir)
        except CalmplaceError:
            import difflib

            known = sorted(p.stem for p in project.voices_dir.glob("*.yaml"))
            close = difflib.get_close_matches(voice, known, n=1, cutoff=0.75)   # QA: `--voice narattor`
            _info(f"note: there is no voices/{voice}.yaml yet"
                  + (f" (did you mean {close[0]!r}?)" if close else "")
                  + "; create it with the line `engine: recorded` before building")
    if profile.engine == "tts" and profile.name == voice_name:
        _info(f"note: {voice_name!r} is a text-to-speech voice; name your own voice with --voice NAME "
              f"(and create voices/NAME.yaml with `engine: recorded`); the template says {_PLACEHOLDER!r}")
        # QA: the PDF told the reader to save takes under voices/narrator/ and that narrator.yaml
        # says engine: recorded, which it does not
        voice_name = _PLACEHOLDER
    tts, why = _synthetic(profile, voices_dir=project.voices_dir)
    for job in jobs:
        the_plan = plan(job.script, job.locale)
        expected, source = expected_lengths(the_plan, tts, cache_root=_cache_root(project), why=why)
        try:
            pdf = template_pdf(the_plan, expected_s=expected, voice_name=voice_name, script_id=job.script.id)
            csv_text = takes_csv(the_plan, expected_s=expected)
        except ValueError as exc:
            _fail(f"{job.label}: {exc}")
        folder = out_dir / "templates" / job.locale
        try:
            atomic_write(folder / f"{job.script.id}-recording.pdf", pdf)
            atomic_write(folder / f"{job.script.id}-takes.csv", csv_text)
        except OSError as exc:
            _fail(f"cannot write the template: {os_problem(exc)}")
        total = sum(expected)
        _info(f"{job.label}: {len(the_plan.takes)} take{'s' if len(the_plan.takes) != 1 else ''}, about "
              f"{f'{total:.0f} s' if total < 90 else f'{total / 60:.0f} min'} of speech (lengths from {source})")
        click.echo(str(folder / f"{job.script.id}-recording.pdf"))
        click.echo(str(folder / f"{job.script.id}-takes.csv"))


# ------------------------------------------------------------------------------------------------
# calmplace takes ...


@click.group("takes")
def takes() -> None:
    """Your own recorded voice: check the takes, or split one long recording into them."""


def _recorded_jobs(script: str, locales: tuple[str, ...], voice: str | None) -> list[Job]:
    jobs = _jobs(script, locales, voice)
    profile = jobs[0].profile
    if profile.engine != "recorded":
        from .speech.recorded import shown

        _fail(f"voice {profile.name!r} ({shown(Path(profile.path))}) is a text-to-speech voice (engine: {profile.engine}); "
              f"takes belong to a recorded voice: name one with --voice NAME, whose voices/NAME.yaml says "
              f"`engine: recorded`", usage=True)
    return jobs


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.1f} s"


@takes.command("status")
@click.argument("script")
@click.option("--voice", metavar="NAME", callback=voice_name_option,
              help="The recorded voice [default: the script's voice].")
@click.option("--locale", "locales", multiple=True, metavar="L", help="Only this locale (repeatable).")
@click.option("--accept", is_flag=True,
              help="Remember that each take present was recorded for the script's current text "
                   "(clears 'stale' after a harmless edit).")
def status_cmd(script: str, voice: str | None, locales: tuple[str, ...], accept: bool) -> None:
    """Show each take of SCRIPT as ok, missing or stale, with its noise floor and peak warnings.

    Exit status 1 when a take is missing, stale or unreadable (the build would fail or be out of date)."""
    try:
        _status(script, voice, locales, accept)
    except CalmplaceError as exc:   # e.g. a damaged takes.json
        _fail(str(exc))


def _status(script: str, voice: str | None, locales: tuple[str, ...], accept: bool) -> None:
    from .speech.recorded import (analyse, damage, expected_name, in_the_way, other_exts, read_audio, record_entry,
                                  moved_off_the_end, save_record, shown, stray_files, stray_note, take_dir,
                                  take_states)

    project = _project(script)
    jobs = _recorded_jobs(script, locales, voice)
    trouble = 0
    tts, why = _synthetic(jobs[0].profile, voices_dir=project.voices_dir)
    for job in jobs:
        the_plan = plan(job.script, job.locale)
        folder = take_dir(project.voices_dir, job.profile.name, job.script.id, job.locale)
        states = take_states(folder, the_plan.takes)
        expected = None
        if any(s.state not in ("missing", "duplicate") for s in states):  # each take's expected length
            expected = dict(zip((t.name for t in the_plan.takes),
                                expected_lengths(the_plan, tts, cache_root=_cache_root(project), why=why)[0]))
        click.echo(f"{job.label}, voice {job.profile.name}: {shown(folder)}/")
        counts = {"ok": 0, "new": 0, "missing": 0, "stale": 0, "duplicate": 0, "unreadable": 0, "silent": 0}
        n_warn = 0
        accepted = {}
        renamed: list = []
        for s in states:
            line = f"  {s.take.name}  "
            notes: list[str] = []
            state = s.state
            if s.state == "missing":
                line += (f"missing    {expected_name(folder, s.take).name} (or {other_exts()})"
                         f"{in_the_way(folder, s.take)}")
            elif s.state == "duplicate":
                line += f"duplicate  {', '.join(p.name for p in (s.path, *s.others))}: keep one"
            else:
                problem = damage(s.path)  # a truncated file holds part of a take: the build refuses it
                if problem:
                    problem += "; record it again or copy it anew"
                else:
                    try:
                        data, sr = read_audio(s.path)
                        a = analyse(data, sr)
                    except CalmplaceError as exc:
                        problem = str(exc).split(': ', 1)[-1]
                if problem:
                    state = "unreadable"
                    line += f"unreadable {s.path.name}: {problem}"
                else:
                    if not a.speech:  # the build would stop at this take
                        state = "silent"
                    peak = f"{a.peak_dbfs:5.1f} dBFS" if a.peak_dbfs > -200 else "silent    "
                    line += (f"{state:10} {s.path.name:10} {_fmt_s(a.duration_s):>7}  noise {a.noise_floor_dbfs:4.0f} "
                             f"dBFS  peak {peak}  {a.sr} Hz {a.channels} ch")
                    notes = a.warnings(expected_s=expected.get(s.take.name) if expected else None)
                    if s.renumbered:
                        notes.insert(0, f"recorded for \u201c{s.recorded_text}\u201d: {s.path.name} was recorded for "
                                        f"what is now take {s.now_take}: rename it to {s.now_take}{s.path.suffix} "
                                        f"(the takes were renumbered; do not --accept it)")
                        renamed.append(s)
                    elif s.state == "stale":
                        notes.insert(0, f"recorded for \u201c{s.recorded_text}\u201d; the script now says "
                                        f"\u201c{s.take.text}\u201d")
                    elif s.state == "new":
                        notes.insert(0, "new recording, not yet accepted: run with --accept to remember it was "
                                        "recorded for the current text (so that later edits show it as stale)")
                    if accept and state != "silent" and not s.renumbered:
                        accepted[s.take.name] = record_entry(s.take, s.path, sha256=s.sha256)
            counts[state] += 1
            click.echo(line)
            for note in notes:
                click.echo(f"        {note}")
            n_warn += len([n for n in notes if not n.startswith(("recorded for", "new recording"))])
        moved = {s.path: s for s in moved_off_the_end(folder, the_plan.takes)}
        for p in stray_files(folder, the_plan.takes):
            if p in moved:   # past the last take now, recorded for a text the script still has
                click.echo(f"  note: {p.name} was recorded for \u201c{moved[p].recorded_text}\u201d, what is now "
                           f"take {moved[p].now_take}: rename it to {moved[p].now_take}{p.suffix}")
                renamed.append(moved[p])
                trouble += 1
            else:
                click.echo(f"  note: {stray_note(p, the_plan.takes)}")
        summary = [f"{counts['ok']} of {len(states)} takes ok"]
        summary += [f"{v} {k}" for k, v in counts.items() if v and k != "ok"]
        if n_warn:
            summary.append(f"{n_warn} warning{'s' if n_warn != 1 else ''}")
        click.echo("  " + ", ".join(summary))
        if renamed:
            click.echo(f"  {len(renamed)} take file{'s were' if len(renamed) != 1 else ' was'} recorded for another "
                       f"take's text (a sentence was added or removed): rename them, the highest number first "
                       f"after an added sentence, the lowest first after a removed one (the build lists them in "
                       f"that order), or let calmplace do it: calmplace takes rename {job.script.id} --voice "
                       f"{job.profile.name} --locale {job.locale}"
                       + (" (--accept leaves them stale)" if accept else ""))
        if accept and accepted:
            save_record(folder, accepted, script_id=job.script.id, locale=job.locale)
            click.echo(f"  accepted {len(accepted)} take{'s' if len(accepted) != 1 else ''} as recorded for the "
                       f"current text ({shown(folder / 'takes.json')})")
            counts["stale"] = len(renamed)
            counts["new"] = 0
        elif not accept and not any(s.accepted for s in states) and counts["ok"]:
            click.echo("  (run with --accept to remember which text each take was recorded for, so that later "
                       "edits to the script are flagged)")
        trouble += sum(v for k, v in counts.items() if k not in ("ok", "new"))  # new: usable, only untracked
    sys.exit(1 if trouble else 0)


@takes.command("rename")
@click.argument("script")
@click.option("--voice", metavar="NAME", callback=voice_name_option,
              help="The recorded voice [default: the script's voice].")
@click.option("--locale", "locales", multiple=True, metavar="L", help="Only this locale (repeatable).")
@click.option("--dry-run", is_flag=True, help="List the renames; change nothing.")
def rename_cmd(script: str, voice: str | None, locales: tuple[str, ...], dry_run: bool) -> None:
    """Rename take files recorded for what is now another take (a sentence was added or removed).

    Each file goes to the number of the take whose text it was recorded for, in a safe order, and
    takes.json follows. Nothing is renamed for a locale where a file is in the way (exit 1)."""
    from .speech.recorded import apply_renames, rename_plan, shown, take_dir

    project = _project(script)
    jobs = _recorded_jobs(script, locales, voice)
    trouble = False
    for job in jobs:
        the_plan = plan(job.script, job.locale)
        folder = take_dir(project.voices_dir, job.profile.name, job.script.id, job.locale)
        try:
            moves = rename_plan(folder, the_plan.takes)
        except CalmplaceError as exc:
            click.echo(f"error: {job.label}, voice {job.profile.name}: {exc}", err=True)
            trouble = True
            continue
        click.echo(f"{job.label}, voice {job.profile.name}: {shown(folder)}/")
        if not moves:
            click.echo("  nothing to rename")
            continue

        def said(r) -> None:
            click.echo(f"  {r.state.path.name} -> {r.target.name}  \u201c{r.state.recorded_text}\u201d")

        if dry_run:
            for r in moves:
                said(r)
            click.echo(f"  {len(moves)} to rename (--dry-run: nothing changed)")
            continue
        try:
            apply_renames(folder, moves, script_id=job.script.id, locale=job.locale, on_rename=said)
        except OSError as exc:
            _fail(f"cannot rename the takes in {shown(folder)}/: {os_problem(exc)} (run it again once "
                  f"that is fixed: it goes on from where it stopped)")
        click.echo(f"  renamed {len(moves)} take file{'s' if len(moves) != 1 else ''}; "
                   f"{shown(folder / 'takes.json')} follows them")
    sys.exit(1 if trouble else 0)


@takes.command("split")
@click.argument("script")
@click.argument("recording", type=click.Path(path_type=Path))
@click.option("--voice", metavar="NAME", callback=voice_name_option,
              help="The recorded voice [default: the script's voice].")
@click.option("--locale", metavar="L", help="The locale read in the recording (needed when the script has several).")
@click.option("--format", "fmt", type=click.Choice(["wav", "flac"]), default="wav", show_default=True,
              help="Format of the take files (24-bit, at the recording's own rate).")
@click.option("--force", is_flag=True, help="Replace take files that already exist.")
@click.option("--accept-lengths", is_flag=True,
              help="Write the takes even when some look far too long or short (outside 0.6-1.6x the expected "
                   "length) or sound like another take: you have listened, and they are right.")
def split_cmd(script: str, recording: Path, voice: str | None, locale: str | None, fmt: str, force: bool,
              accept_lengths: bool) -> None:
    """Split RECORDING, every take of SCRIPT read in order with a pause between, into the take files."""
    from .speech.recorded import read_audio, shown, take_dir
    from .split import plan_split, write_split

    project = _project(script)
    jobs = _recorded_jobs(script, (locale,) if locale else (), voice)
    if len(jobs) > 1:
        _fail(f"{jobs[0].script.id} has locales {', '.join(j.locale for j in jobs)}: say which one the recording "
              f"reads with --locale", usage=True)
    job = jobs[0]
    try:
        data, sr = read_audio(recording)
        the_plan = plan(job.script, job.locale)
        profile, why = _synthetic(job.profile, voices_dir=project.voices_dir)
        expected, source = expected_lengths(the_plan, profile, cache_root=_cache_root(project), why=why)
        result = plan_split(recording, data, sr, the_plan.takes, expected, accept_lengths=accept_lengths)
        folder = take_dir(project.voices_dir, job.profile.name, job.script.id, job.locale)
        written, removed = write_split(result, data, folder=folder, script_id=job.script.id, locale=job.locale,
                                       fmt=fmt, force=force)
    except CalmplaceError as exc:
        _fail(str(exc))
    except OSError as exc:  # write_split explains its own failures; anything else, as plainly
        _fail(f"cannot write the takes: {os_problem(exc)}")
    _info(f"{shown(recording)}: the reading is {result.tempo:.2f}x as long as the synthetic voice's "
          f"(expected lengths from {source})")
    for note in result.notes:
        _info(note)
    for cut, path in zip(result.cuts, written):
        click.echo(f"  {cut.take.name}  {shown(path)}  at {cut.speech_start / sr:7.1f} s  "
                   f"{_fmt_s(cut.length_s):>7} (expected {_fmt_s(cut.expected_s)})"
                   f"{'  ' + str(len(cut.chunks)) + ' parts' if len(cut.chunks) > 1 else ''}")
    if removed:
        _info(f"kept the {len(removed)} take file{'s' if len(removed) != 1 else ''} replaced in "
              f"{shown(removed[0].parent)}/ (delete {'it' if len(removed) == 1 else 'them'} when no longer needed)")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    _info(f"wrote {len(written)} take{'s' if len(written) != 1 else ''} to {shown(folder)}/")


__all__ = ["template", "takes", "expected_lengths"]
