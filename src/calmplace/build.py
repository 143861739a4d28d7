"""Build orchestration: gather and validate everything first, then synthesise, mix, master, write.

Nothing is written for a script that fails; every output is written atomically, and a track's
three outputs are written only once all three are complete in memory.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Iterator

import numpy as np

from . import GC_GEN0_THRESHOLD, SR, __version__, _workers
from .errors import CalmplaceError, Problem, ScriptErrors, WordedErrors, os_problem
from .fsio import atomic_write, sha256_bytes, sha256_file, sweep_temp_files
from .script import Project, Script, load_scripts
from .takes import Gap, Plan, plan
from .timeline import Timeline, build_timeline
from .units import format_clock
from .voices import VoiceProfile, load_voice

# ISO 639-2 codes for ID3 TLAN, by the language part of a BCP 47 tag
_ISO639_2 = {"en": "eng", "de": "deu", "fr": "fra", "es": "spa", "it": "ita", "nl": "nld", "pt": "por",
             "sv": "swe", "da": "dan", "nb": "nob", "no": "nor", "fi": "fin", "pl": "pol", "cy": "cym",
             "ga": "gle", "ja": "jpn", "zh": "zho", "ko": "kor", "ru": "rus", "ar": "ara", "hi": "hin"}


@dataclass(frozen=True)
class Settings:
    """Every option that changes what a build writes. Its key, part of every output's cache key,
    holds the fields that shape the outputs; `voice` and `fallback_tts` (INPUT_SELECTORS) only
    choose inputs (the voice profile, and which engine speaks a missing take), whose effect on
    the outputs is keyed already (the profile and the take keys are in output_key), so they are
    left out of it: `--voice` naming the script's own voice changes no byte and marks nothing stale."""

    INPUT_SELECTORS: ClassVar[tuple[str, ...]] = ("voice", "fallback_tts")

    sr: int = SR
    target_lufs: float = -16.0   # -16 LUFS: Apple podcast delivery (and the contract)
    ceiling_dbtp: float = -1.0   # -1 dBTP: EBU R128 / podcast true-peak ceiling
    bitrate_kbps: int = 192      # CBR; ≥128 kbps by the contract, 192 keeps quiet beds free of artefacts
    voice: str | None = None     # --voice: overrides every script's `voice`
    fallback_tts: bool = False   # recorded voices: fill missing takes with the synthetic voice

    def key(self) -> str:
        shaping = {k: v for k, v in dataclasses.asdict(self).items() if k not in self.INPUT_SELECTORS}
        return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()


@dataclass
class Report:
    """Counts what was built, found cached or failed, and owns the exit code."""

    built: int = 0
    cached: int = 0
    failed: int = 0
    stale: int = 0   # `build --check`: tracks with an output missing or out of date
    checking: bool = False   # `build --check`: nothing is built, only compared
    halted: bool = False   # a script (or voice) had errors: nothing was looked at further
    problems: list[str] = field(default_factory=list)
    tracks: list[dict] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)   # outputs of scripts or locales that are gone
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.stale or self.problems else 0

    def fail(self, message: str) -> None:
        self.failed += 1
        self.problems.append(message)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings_s[name] = self.timings_s.get(name, 0.0) + time.perf_counter() - t0

    def summary(self) -> str:
        if self.halted:   # QA read "0 built, 0 unchanged, 1 failed" as every other track being lost
            return "nothing built: fix the errors above first (every script is checked before any is built)"
        # `build --check` builds nothing: QA read "0 built, 5 unchanged, 1 failed" for a stale track
        parts = [f"{self.built} built", f"{self.cached} unchanged"] if not self.checking else \
            [f"{self.cached} up to date", f"{self.stale} missing or stale"]
        if self.removed:
            parts.append(f"{len(self.removed)} removed")
        if self.failed:
            parts.append(f"{self.failed} failed")
        return ", ".join(parts)


@dataclass(frozen=True)
class Job:
    script: Script
    locale: str
    profile: VoiceProfile

    @property
    def label(self) -> str:
        return f"{self.script.id} ({self.locale})"


class NullUI:
    """What the build tells the person running it; the CLI supplies one with progress bars."""

    def info(self, message: str) -> None: ...
    def detail(self, message: str) -> None: ...
    def progress(self, label: str, total: int): return _NullProgress()


class _NullProgress:
    def __enter__(self): return self
    def __exit__(self, *exc): return False
    def update(self, n: int) -> None: ...


# ------------------------------------------------------------------------------------------------
# Gathering


def script_paths(project: Project, names: tuple[str, ...] = ()) -> tuple[list[Path], list[Problem]]:
    """Named scripts (ids or paths), or every `scripts/*.yaml` (and `.yml`); a script named twice is
    listed once. Two scripts with one id (`dup.yaml` and `dup.yml`) are a problem: their outputs
    are named after the id and would overwrite each other."""
    from .errors import ProblemCollector, display_path

    def id_clashes(paths: list[Path]) -> list[Problem]:
        """One problem per id shared by two script files among `paths` or beside them in scripts/."""
        scripts_dir = project.scripts_dir.resolve() if project.scripts_dir.is_dir() else None
        by_id: dict[str, dict[Path, Path]] = {}
        for path in paths:
            files = by_id.setdefault(path.stem, {})
            files.setdefault(path.resolve(), path)
            if scripts_dir is not None and path.resolve().parent == scripts_dir:
                for sibling in (project.scripts_dir / f"{path.stem}.yaml", project.scripts_dir / f"{path.stem}.yml"):
                    if sibling.is_file():
                        files.setdefault(sibling.resolve(), sibling)
        problems = []
        for script_id, files in by_id.items():
            if len(files) < 2:
                continue
            shown = [display_path(p) for p in files.values()]
            second = list(files.values())[1]
            try:
                text = second.read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            collector = ProblemCollector(shown[1], text)
            collector.add(f"script id {script_id!r} is used by both {' and '.join(shown)}: outputs are named after "
                          f"the id, so one would overwrite the other; rename one of them", 1, 1)
            problems.extend(collector.problems)
        return problems

    if not names:
        paths = sorted(project.scripts_dir.glob("*.yaml")) + sorted(project.scripts_dir.glob("*.yml"))
        if not paths:
            return [], [Problem(str(project.scripts_dir), 0, 0, "no scripts found (expected scripts/<id>.yaml)")]
        return paths, id_clashes(paths)
    paths, problems, seen = [], [], set()
    for name in names:
        folder = Path(name)
        if folder.is_dir():   # `check scripts/`: every script in it (QA: "no such script")
            hits = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
            if not hits:
                problems.append(Problem(name, 0, 0, "no scripts in this folder (expected <id>.yaml files)"))
        else:
            candidates = [folder, project.scripts_dir / name, project.scripts_dir / f"{name}.yaml",
                          project.scripts_dir / f"{name}.yml"]
            hits = [p for p in candidates if p.is_file()][:1]
            if not hits:
                problems.append(Problem(name, 0, 0,
                                        "no such script (give an id from scripts/ or a path to a .yaml file)"))
        for hit in hits:
            if hit.resolve() not in seen:  # `build scripts/tiny.yaml tiny` builds it once
                seen.add(hit.resolve())
                paths.append(hit)
    return paths, problems + id_clashes(paths)


def gather(project: Project, names: tuple[str, ...], *, locales: tuple[str, ...] = (),
           settings: Settings = Settings()) -> tuple[list[Job], list[str]]:
    """Load and validate every script and voice; return the jobs or every problem found."""
    paths, problems = script_paths(project, names)
    scripts, script_problems = load_scripts(paths, project=project)
    messages = [p.format() for p in problems + script_problems]
    profiles: dict[str, VoiceProfile] = {}
    jobs: list[Job] = []
    for script in scripts:
        name = settings.voice or script.voice
        if name not in profiles:
            try:
                profiles[name] = load_voice(name, voices_dir=project.voices_dir)
            except ScriptErrors as exc:
                messages.extend(p.format() for p in exc.problems)
                continue
            except CalmplaceError as exc:
                messages.append(f"{script.path}: error: {exc}")
                continue
        # language tags ignore case (BCP 47): `--locale en-us` is the script's en-US (QA)
        asked = {loc.lower() for loc in locales}
        wanted = [loc for loc in script.locales if not locales or loc.lower() in asked]
        jobs.extend(Job(script, loc, profiles[name]) for loc in wanted)
    for loc in locales:
        if scripts and not any(loc.lower() in (t.lower() for t in s.locales) for s in scripts):
            have = sorted({tag for s in scripts for tag in s.locales})
            messages.append(f"error: no script has locale {loc!r} (they have {', '.join(have)})")
    return jobs, messages


# ------------------------------------------------------------------------------------------------
# Caches


class TakeCache:
    """Clips as .npy files named by their take key (see speech.Engine.take_keys)."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / "takes" / key[:2] / f"{key}.npy"

    # after the array, its samples' sha256: damage that still reads as an array (CI QA: 2000
    # samples overwritten with 0.5 were used, a 45 ms burst in the track) is caught on reading
    TRAILER = b"calmplace-sha256:"

    def get(self, key: str) -> np.ndarray | None:
        """The clip, or None if the entry is missing or is not a plain, finite, 1-D float32 array
        whose samples match the checksum after them (damaged, another format such as a zip, a folder
        in its place, NaN or infinite samples, an entry of a calmplace before the checksum): such a
        take is spoken again."""
        try:
            with open(self.path(key), "rb") as f:   # the .npy format only: never a zip or a pickle
                clip = np.lib.format.read_array(f, allow_pickle=False)
                trailer = f.read(len(self.TRAILER) + 33)
        except Exception:   # noqa: BLE001 - whatever cannot be read as an array counts as missing
            return None
        if not (isinstance(clip, np.ndarray) and clip.dtype == np.float32 and clip.ndim == 1 and clip.size):
            return None
        if trailer != self.TRAILER + hashlib.sha256(clip.tobytes()).digest():
            return None
        return clip if np.isfinite(clip).all() else None

    def put(self, key: str, clip: np.ndarray) -> None:
        buf = io.BytesIO()
        clip = np.ascontiguousarray(clip, dtype=np.float32)
        np.save(buf, clip, allow_pickle=False)
        buf.write(self.TRAILER + hashlib.sha256(clip.tobytes()).digest())
        path = self.path(key)
        if path.is_dir() and not path.is_symlink():   # a folder where the clip goes: it holds no clip
            import shutil

            shutil.rmtree(path)
        atomic_write(path, buf.getvalue())


def output_paths(out_dir: Path, job: Job) -> dict[str, Path]:
    base = out_dir / job.locale / job.script.id
    return {ext: base.with_suffix(f".{ext}") for ext in ("mp3", "pdf", "vtt")}


def _canonical(value) -> object:
    names = _field_names(type(value))
    if names is not None:
        return {name: _canonical(getattr(value, name)) for name in names}
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


@functools.lru_cache(maxsize=None)
def _field_names(kind: type) -> tuple[str, ...] | None:
    """A dataclass's fields for `_canonical` (all but `path`), None for other types: looked up once
    per type (a library of 20 scripts canonicalises 25,000 values for its keys)."""
    if not dataclasses.is_dataclass(kind):
        return None
    return tuple(f.name for f in dataclasses.fields(kind) if f.name != "path")


def output_key(job: Job, *, settings: Settings, take_keys: list[str], ambience_hashes: dict[str, str],
               the_plan: Plan | None = None, script_shown: str | None = None) -> str:
    """Hash of every input of one track's outputs: what rendering reads (render_track), no more.

    Of the script, that is the locale's Plan (plan() puts in it everything of the script the
    track, PDF and captions show: the locale's words and spelling, titles, pauses, ambience,
    references), the script's id (the beds' seeds) and the path its PDF names; so another
    locale's spelling or title does not rebuild this locale's outputs."""
    the_plan = the_plan if the_plan is not None else plan(job.script, job.locale)
    payload = {
        "calmplace": __version__,
        "code": code_fingerprint(),
        "settings": settings.key(),
        "plan": _canonical(the_plan),
        "script_id": job.script.id,
        "script_shown": script_shown,
        "locale": job.locale,
        "voice": _canonical(job.profile),
        "takes": list(take_keys),
        "ambience": ambience_hashes,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


# the libraries whose releases can change an output's bytes: the encoder, the arithmetic, the
# filter designs, the PDF writer and its font (inside matplotlib), the tags, the decoder behind
# the check of the MP3 (its measurement can send mastering round again), the YAML reader
_SHAPING_DISTRIBUTIONS = ("lameenc", "numpy", "scipy", "pyloudnorm", "reportlab", "matplotlib", "mutagen",
                          "soundfile", "PyYAML")


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A hash of calmplace's own source files (and the filter designs it looks up) and the versions
    of the libraries that shape the outputs, for the output key (CI QA: outputs built by older code
    of the same __version__, or with another numpy, counted as up to date, and a restored cache
    shipped them). Any change to calmplace's code rebuilds every track; the take cache keeps its
    own, explicit versions."""
    return _fingerprint(Path(__file__).resolve().parent, _installed_versions())


def _fingerprint(package: Path, versions: dict[str, str]) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.suffix in (".py", ".json")):   # code, designs
        h.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for name in _SHAPING_DISTRIBUTIONS:
        h.update(f"{name}=={versions.get(_normalised(name), 'absent')}\0".encode())
    return h.hexdigest()


def _normalised(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def _installed_versions() -> dict[str, str]:
    """Installed distributions' versions by normalised name, from the `<name>-<version>.dist-info`
    folders on sys.path: one listing per folder (importlib.metadata.version scans the path per
    name: 0.3 s for nine, where a no-op build takes 0.35 s in all)."""
    import os
    import sys

    out: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.endswith(".dist-info") and "-" in name:
                dist, version = name[: -len(".dist-info")].split("-", 1)
                out.setdefault(_normalised(dist), version)
    return out


def _ambience_hashes(script: Script, project: Project) -> dict[str, str]:
    """Content hashes of user ambience files the script uses (built-ins are versioned by calmplace)."""
    sounds = {script.ambience.sound} if script.ambience else set()
    sounds |= {s.ambience.sound for s in script.sections if s.ambience not in (None, "inherit")}
    out = {}
    for sound in sorted(sounds):
        path = project.ambience_dir / sound
        out[sound] = (sha256_file(path) or "missing") if path.is_file() else "builtin"
    return out


class Manifest:
    """`build/manifest.json`: every output with its sha256, input key and measurements."""

    def __init__(self, path: Path, *, stats: Path | None = None):
        self.path = path
        self.stats = OutputStats(stats, out_dir=path.parent) if stats is not None else None
        if path.exists() and not path.is_file():
            raise CalmplaceError(f"{path} is a folder (or not a file): calmplace keeps its list of outputs in that "
                                 f"file; move it out of the way and build again")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):   # missing, unreadable, not JSON: as if there were none
            data = None
        outputs = data.get("outputs") if isinstance(data, dict) else None
        if not isinstance(outputs, dict):   # valid JSON of the wrong shape ([], null, "x"): the same
            data, outputs = {}, {}
        # an entry that is not an object ({"en-GB/x.mp3": 5}) is as good as missing
        self.data = {**data, "outputs": {rel: e for rel, e in outputs.items() if isinstance(e, dict)}}
        self._original = self._text()
        self._hashed: dict[Path, str | None] = {}   # hash_ahead's, each used once

    def entry(self, rel: str) -> dict:
        return self.data["outputs"].get(rel, {})

    def set(self, rel: str, entry: dict) -> None:
        self.data["outputs"][rel] = entry

    def up_to_date(self, paths: dict[str, Path], *, out_dir: Path, key: str) -> bool:
        for path in paths.values():
            entry = self.entry(path.relative_to(out_dir).as_posix())
            if entry.get("key") != key:
                return False
            digest = self._hashed.pop(path) if path in self._hashed else self._digest(path)
            if digest != entry.get("sha256"):
                return False
        return True

    def hash_ahead(self, tracks: list[tuple[dict[str, Path], str]], *, out_dir: Path) -> None:
        """Hash, on several threads at once, the outputs `up_to_date` will check for these tracks
        (their output paths and input keys): those the manifest lists under that key. hashlib lets
        go of the GIL; hashing is most of a no-op build over a large library (40 tracks, 640 MB:
        0.68 s on one thread)."""
        import os
        from concurrent.futures import ThreadPoolExecutor

        todo = [p for paths, key in tracks for p in paths.values()
                if self.entry(p.relative_to(out_dir).as_posix()).get("key") == key]
        if self.stats is not None:   # what the last build wrote and nothing has touched since: no need
            known = {p: self.stats.digest(p) for p in todo}
            self._hashed.update((p, d) for p, d in known.items() if d is not None)
            todo = [p for p in todo if known[p] is None]
        threads = min(8, os.cpu_count() or 1, len(todo))
        if threads < 2:
            return
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="calmplace-hash") as pool:
            self._hashed.update(zip(todo, pool.map(sha256_file, todo)))

    def _digest(self, path: Path) -> str | None:
        known = self.stats.digest(path) if self.stats is not None else None
        return known if known is not None else sha256_file(path)

    def wrote(self, path: Path, digest: str) -> None:
        """`path` was just written with these bytes (for `OutputStats`)."""
        if self.stats is not None:
            self.stats.record(path, digest)

    def _text(self) -> str:
        return json.dumps(self.data, sort_keys=True, indent=2) + "\n"

    def save(self) -> None:
        text = self._text()
        if text != self._original:  # a no-op build touches no file
            atomic_write(self.path, text)
            self._original = text
        if self.stats is not None:
            self.stats.save(keep={(self.path.parent / rel) for rel in self.data["outputs"]})


OUTPUT_STATS = "output-stats.json"   # in the cache folder


class OutputStats:
    """What each output was when this build (or the last) wrote it: size, modification and change
    times, inode, and sha256, in the cache folder (`output-stats.json`; not in the manifest, which
    may be committed, and whose inodes and times would then change on every checkout). An output
    whose `os.stat` still matches was not touched since, and `Manifest.up_to_date` takes its
    sha256 from here instead of reading it: hashing 640 MB was a third of a no-op build over 20
    scripts. The change time cannot be set back (`touch -d` sets only the modification time), and
    every write or rename moves it. Only a speed-up: a missing or unreadable file, or one that
    cannot be written, means hashing as before."""

    def __init__(self, path: Path, *, out_dir: Path):
        import os

        self.path = path
        self.prefix = os.path.abspath(out_dir) + os.sep
        self.records = self._read(path)
        self._original = dict(self.records)

    @staticmethod
    def _read(path: Path) -> dict[str, list]:
        """The records in the file (absolute path -> stat and sha256); none if it is missing or damaged."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        return {name: rec for name, rec in (data.items() if isinstance(data, dict) else ())
                if isinstance(rec, list) and len(rec) == 6 and isinstance(rec[5], str)}

    @staticmethod
    def _stat(path: Path) -> list | None:
        import os

        try:
            st = os.stat(path)
        except OSError:
            return None
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]

    def digest(self, path: Path) -> str | None:
        """The sha256 recorded for `path`, if the file is still as it was then; else None."""
        import os

        rec = self.records.get(os.path.abspath(path))
        if rec is None:
            return None
        return rec[5] if self._stat(path) == rec[:5] else None

    def record(self, path: Path, digest: str) -> None:
        import os

        st = self._stat(path)
        if st is not None:
            self.records[os.path.abspath(path)] = st + [digest]

    def save(self, *, keep: set[Path]) -> None:
        """Write the records, those of this output folder only for the outputs in `keep` (others'
        folders sharing the cache keep theirs); nothing when nothing changed."""
        import os

        kept = {os.path.abspath(p) for p in keep}
        self.records = {name: rec for name, rec in self.records.items()
                        if not name.startswith(self.prefix) or name in kept}
        if self.records == self._original:
            return
        # another output folder's build may share the cache and have saved meanwhile: its records
        # as they are now (two saving at the same moment can still lose one's: then it hashes)
        # (those of files gone, as when an output folder was deleted, are dropped)
        now = self._read(self.path)
        self.records = {**{name: rec for name, rec in now.items()
                           if not name.startswith(self.prefix) and os.path.lexists(name)},
                        **{name: rec for name, rec in self.records.items() if name.startswith(self.prefix)}}
        try:
            atomic_write(self.path, json.dumps(self.records, sort_keys=True) + "\n")
            self._original = dict(self.records)
        except OSError:
            pass   # a read-only or full cache: the next build hashes the outputs, as without this file


# ------------------------------------------------------------------------------------------------
# Building


def make_engine(profile: VoiceProfile, settings: Settings | None = None, ui=None):
    """The engine for a voice profile. `settings.fallback_tts` lets a recorded voice fill missing
    takes with its synthetic fallback; `ui.info` hears a recorded voice's warnings (stale takes)."""
    if profile.engine == "tts":
        from .speech.tts import TtsEngine

        return TtsEngine(profile)
    if profile.engine == "recorded":
        from .speech.recorded import RecordedEngine

        # the profile was read from <voices_dir>/<name>.yaml; its takes live beside it
        voices_dir = Path(profile.path).parent if profile.path else Path("voices")
        return RecordedEngine(profile, voices_dir=voices_dir, fallback_tts=bool(settings and settings.fallback_tts),
                              on_warning=(lambda message: ui.info(f"warning: {message}")) if ui else None)
    raise CalmplaceError(f"voice {profile.name!r}: engine {profile.engine!r} is not supported yet")


@dataclass(frozen=True)
class TrackWork:
    """Everything a worker needs to render one track: picklable, and no engine inside."""

    job: Job
    plan: Plan
    take_keys: tuple[str, ...]
    output_key: str
    ambience_dir: Path
    cache_root: Path
    settings: Settings
    threads: int = 1   # for the bed, meter, limiter, encoder and check inside this track; never changes a byte
    script_shown: str | None = None   # the script's path as its PDF names it (see _shown_path)


@dataclass(frozen=True)
class TrackResult:
    outputs: dict[str, bytes]
    duration_s: float
    n_takes: int
    measured: object  # measurement.Measurement
    timings_s: dict[str, float]
    warnings: tuple[str, ...] = ()
    bed_trim_db: float = 0.0   # how far the beds went under level_db (a mostly-ambience track)


def build(project: Project, names: tuple[str, ...] = (), *, locales: tuple[str, ...] = (), out_dir: Path | None = None,
          cache_dir: Path | None = None, settings: Settings = Settings(), jobs: int = 1, force: bool = False,
          check_only: bool = False, ui=None,
          engine_factory: Callable[[VoiceProfile], object] | None = None) -> Report:
    """Gather and validate everything, plan every track, speak the missing takes, then render
    the changed tracks (`jobs` at a time) and write their outputs atomically.

    With `check_only`, nothing is built: every missing or stale output is reported (exit 1)."""
    ui = ui or NullUI()
    _keep_freed_memory()
    # real engines hear the settings (fallback_tts) and the UI (a recorded voice's warnings)
    real_engines = engine_factory is None
    engine_factory = engine_factory or (lambda profile: make_engine(profile, settings, ui))
    report = Report(checking=check_only)
    out_dir = out_dir or project.root / "build"
    cache = TakeCache(cache_dir or out_dir / ".cache")
    with report.stage("script"):
        track_jobs, problems = gather(project, names, locales=locales, settings=settings)
        if real_engines:   # every valid script's, beside the other scripts' problems
            problems += voiceless(track_jobs)
    if problems:
        return _halted(report, problems)
    # `--check` waits for a build writing the outputs (CI QA: it called them stale mid-build)
    with BuildLock(out_dir, ui=ui, reading=check_only, cache_root=cache.root) as lock:
        manifest = Manifest(out_dir / "manifest.json", stats=cache.root / OUTPUT_STATS)
        planned, unplanned = _plan_each(   # every track, before anything is built
            track_jobs, engine_factory,
            lambda job, engine: _plan_track(job, engine=engine, project=project, out_dir=out_dir, cache=cache,
                                            settings=settings))
        if unplanned:   # as with a script's errors, nothing is built (QA: the script's other locales were)
            return _halted(report, unplanned)
        work: list[tuple[TrackWork, object]] = []
        if not force:
            manifest.hash_ahead([(output_paths(out_dir, item.job), item.output_key) for item, _ in planned],
                                out_dir=out_dir)
        for item, engine in planned:   # find what changed
            job = item.job
            if not force and manifest.up_to_date(output_paths(out_dir, job), out_dir=out_dir, key=item.output_key):
                report.cached += 1
                ui.detail(f"{job.label}: unchanged")
            elif check_only:
                paths = output_paths(out_dir, job)
                stale = [p for p in paths.values()
                         if not manifest.up_to_date({"": p}, out_dir=out_dir, key=item.output_key)]
                report.stale += 1
                report.problems.append(f"{job.label}: outputs are missing or stale: "
                                       + ", ".join(str(p) for p in (stale or paths.values())))
            else:
                work.append((item, engine))
        if check_only:
            if not names and not locales:   # CI QA: passed with a removed script's outputs still there
                gone = [rel for rel in _gone(manifest, out_dir=out_dir, wanted=track_jobs) if (out_dir / rel).is_file()]
                if gone:
                    report.stale += 1
                    report.problems.append("outputs of scripts or locales that are gone (a build removes them): "
                                           + ", ".join(str(out_dir / rel) for rel in gone))
            return report
        if work:
            if lock.write_error is not None:   # checked only now: a build with nothing to do needs no write access
                raise CalmplaceError(f"cannot write the outputs in {out_dir}/: "
                                     f"{os_problem(lock.write_error, path=False)}")
            with _writable_cache(cache, work, ui=ui) as (cache, work), _fewer_collections():
                for item, result in _speak_and_render(work, cache=cache, jobs=jobs, force=force, ui=ui, report=report):
                    if isinstance(result, Exception):
                        report.fail(f"{item.job.label}: error: {result}")
                        continue
                    _write_track(item, result, out_dir=out_dir, manifest=manifest, report=report, ui=ui)
                    manifest.save()   # after each track: a build killed or failing later keeps what it finished
        if not names and not locales:   # the whole library: outputs of scripts and locales now gone go
            _remove_gone(manifest, out_dir=out_dir, wanted=track_jobs, lock=lock, report=report, ui=ui)
    return report


def _plan_each(track_jobs: list[Job], engine_factory: Callable[[VoiceProfile], object],
               plan_one: Callable[[Job, object], object]) -> tuple[list[tuple[object, object]], list[str]]:
    """(plan_one(job, engine), engine) for every job, one engine per voice profile, and a problem
    for each job that could not be planned."""
    engines: dict[str, object] = {}
    planned: list[tuple[object, object]] = []
    problems: list[str] = []
    for job in track_jobs:
        try:
            engine = engines.get(job.profile.name) or engines.setdefault(job.profile.name, engine_factory(job.profile))
            planned.append((plan_one(job, engine), engine))
        except CalmplaceError as exc:
            problems.append(f"{job.label}: error: {exc}")
    return planned, problems


def _halted(report: Report, problems: list[str]) -> Report:
    """The report of a build stopped before building anything, for these problems."""
    report.problems.extend(problems)
    report.failed += len({p.split(":")[0] for p in problems})
    report.halted = True
    return report


def voiceless(jobs: list[Job]) -> list[str]:
    """A problem, at the locale in its script, for each script locale that no installed voice of
    its text-to-speech profile speaks (QA: `check` passed such a script and the build failed it,
    after building its other locales). Where the voices cannot be listed (no espeak-ng here),
    nothing: speaking says what to install."""
    from .speech.tts import choose_voice, system_voices

    wanted = {(j.script.path, j.locale, j.profile.name): j for j in jobs if j.profile.engine == "tts"}
    if not wanted:
        return []
    try:
        voices = system_voices()
    except CalmplaceError:
        return []
    problems = []
    for job in wanted.values():
        try:
            choose_voice(job.profile.prefer_for(job.locale), locale=job.locale, voices=voices)
        except CalmplaceError as exc:
            problems.append(job.script.problem_at_locale(job.locale, f"voice {job.profile.name}: {exc}"))
    return problems


def _gone(manifest: Manifest, *, out_dir: Path, wanted: list[Job]) -> list[str]:
    """The outputs the manifest lists (relative paths, in order) that no wanted track makes."""
    current = {p.relative_to(out_dir).as_posix() for job in wanted for p in output_paths(out_dir, job).values()}
    return sorted(rel for rel in manifest.data["outputs"] if rel not in current)


def _remove_gone(manifest: Manifest, *, out_dir: Path, wanted: list[Job], lock: BuildLock, report: Report,
                 ui) -> None:
    """Remove the outputs the manifest lists for scripts (or locales) that no longer exist, and
    drop them from the manifest. A file whose bytes are no longer the ones calmplace wrote (its
    sha256 differs from the manifest's) is someone's own: it stays, and only leaves the manifest.
    Only `<locale>/<id>.mp3|pdf|vtt` in a real folder of `out_dir` is touched (no link, no `..`)."""
    gone = _gone(manifest, out_dir=out_dir, wanted=wanted)
    if not gone:
        return
    if lock.write_error is not None:
        ui.info(f"warning: cannot remove the outputs of removed scripts from {out_dir}/: "
                f"{os_problem(lock.write_error, path=False)}")
        return
    folders = set()
    for rel in gone:
        entry = manifest.data["outputs"].pop(rel)
        parts = Path(rel).parts
        if (len(parts) != 2 or Path(rel).is_absolute() or ".." in parts
                or Path(rel).suffix not in (".mp3", ".pdf", ".vtt")):
            continue   # not a name calmplace gives an output: not touched
        path = out_dir / rel
        if path.parent.is_symlink() or path.is_symlink() or not path.is_file():
            continue   # a link leads out of the outputs
        if sha256_file(path) != entry.get("sha256"):
            ui.info(f"kept {path}: its script or locale is gone, but the file was changed since it was built "
                    f"(no longer in the manifest)")
            continue
        path.unlink()
        folders.add(path.parent)
        report.removed.append(str(path))
        ui.info(f"removed {path} (its script or locale is gone)")
        plot = path.with_name(f"{path.stem}-timeline.png")   # `calmplace plot`'s picture of it (author QA)
        if path.suffix == ".mp3" and plot.is_file() and not plot.is_symlink():
            plot.unlink()
            report.removed.append(str(plot))
            ui.info(f"removed {plot} (its script or locale is gone)")
    manifest.save()
    for folder in folders:
        _rmdir_if_empty(folder)   # a locale folder left empty


@contextmanager
def _writable_cache(cache: TakeCache, work: list[tuple[TrackWork, object]], *, ui):
    """(cache, work) as they are if new takes can be written to the cache; else, after one
    warning, a temporary cache for this build only, with links to the takes the cache already
    holds, and the work pointed at it: the build goes on without caching (a read-only CI cache)."""
    import os
    import shutil
    import tempfile

    problem = None
    try:
        folder = cache.root / "takes"
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".probe.npy.", suffix=".tmp")   # a name the lock sweeps
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        problem = exc
    if problem is None:
        yield cache, work
        return
    ui.info(f"warning: cannot write the take cache {cache.root}/ ({os_problem(problem, path=False)}): "
            f"going on without caching; "
            f"new takes will be spoken again next time")
    _sweep_spills(Path(tempfile.gettempdir()))
    spill = Path(tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}{os.getpid()}-"))
    try:
        local = TakeCache(spill)
        for item, _engine in work:
            for key in item.take_keys:
                source, link = cache.path(key), local.path(key)
                if source.is_file() and not link.exists():
                    link.parent.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(source.resolve())
        yield local, [(dataclasses.replace(item, cache_root=spill), engine) for item, engine in work]
    finally:
        shutil.rmtree(spill, ignore_errors=True)


SPILL_PREFIX = "calmplace-takes-"   # + the pid of the build that made it + "-" + mkdtemp's random part


def _sweep_spills(folder: Path) -> list[Path]:
    """Remove the temporary take caches (`_writable_cache`) of builds that no longer run: a build
    killed with SIGKILL cannot remove its own. Another user's, or a running process's, are left."""
    import os
    import re
    import shutil

    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = re.fullmatch(re.escape(SPILL_PREFIX) + r"(\d+)-\w+", entry.name)
        if not match:
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
            os.kill(int(match[1]), 0)   # alive (or the pid was reused): keep it
            continue
        except ProcessLookupError:
            pass
        except (OSError, OverflowError):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


def _plan_track(job: Job, *, engine, project: Project, out_dir: Path, cache: TakeCache, settings: Settings) -> TrackWork:
    the_plan = plan(job.script, job.locale)
    keys = engine.take_keys(the_plan.takes, script_id=job.script.id, locale=job.locale, sr=settings.sr)
    shown = _shown_path(job.script.path, project)
    key = output_key(job, settings=settings, take_keys=keys, ambience_hashes=_ambience_hashes(job.script, project),
                     the_plan=the_plan, script_shown=shown)
    return TrackWork(job, the_plan, tuple(keys), key, project.ambience_dir, cache.root, settings, script_shown=shown)


def _shown_path(script_path: str | None, project: Project) -> str | None:
    """The script's path as its PDF names it: from the project's root, so the PDF has the same
    bytes from whichever folder the build is run (the path a script was loaded by is relative to
    the working folder, for messages); a script outside the project is named by its file name."""
    if not script_path:
        return None
    path = Path(script_path).resolve()
    try:
        return path.relative_to(project.root.resolve()).as_posix()
    except ValueError:
        return path.name


def synthesise(item: TrackWork, *, engine, cache: TakeCache, jobs: int, force: bool, ui,
               put: Callable[[str, np.ndarray], None] | None = None) -> dict[str, np.ndarray]:
    """Put a clip for every take of a track into the cache (`put`, by default `cache.put`); only
    missing takes are rendered (all of them with `force`). Returns the new clips by take key."""
    job, keys, takes = item.job, item.take_keys, item.plan.takes
    missing = [i for i, k in enumerate(keys) if force or cache.get(k) is None]
    if not missing:
        return {}
    verb = "reading" if job.profile.engine == "recorded" else "speaking"   # QA: a recorded voice is not spoken
    ui.detail(f"{verb} {len(missing)} of {len(keys)} take{'s' if len(keys) != 1 else ''} of {job.label}: "
              + ", ".join(takes[i].name for i in missing))
    with ui.progress(f"{verb} {job.label}", len(missing)) as bar:
        fresh = engine.speak([takes[i] for i in missing], script_id=job.script.id, locale=job.locale,
                             sr=item.settings.sr, jobs=jobs, on_done=lambda _i: bar.update(1))
    put = put or cache.put
    for i, clip in zip(missing, fresh):
        put(keys[i], clip)
    return {keys[i]: clip for i, clip in zip(missing, fresh)}


def _speak_and_render(work: list[tuple[TrackWork, object]], *, cache: TakeCache, jobs: int, force: bool, ui,
                      report: Report):
    """Speak each track's missing takes, then render it; yield (item, result or error) in order.

    With jobs > 1 and several tracks, a track is handed to a pool of worker processes as soon as
    its takes are spoken, so the next track's speech overlaps the previous track's rendering. A
    lone track (or jobs=1) is rendered in this process; with jobs > 1 its bed is generated while
    its takes are spoken."""
    import concurrent.futures

    pool = submitter = None
    # the CPUs are shared out among the tracks rendered side by side; a track's threads generate
    # its bed beside the mix, and encode and measure pieces of its MP3 side by side. (Two tracks
    # on two CPUs with two threads each took 14.8 s against 13.6 s with one each, medians of 3:
    # the threads' extra work and page faults cost more than the idle tail they save; the tail's
    # CPUs are lent to the encoders instead, `_SpareCpuLedger`.)
    workers = min(jobs, len(work))
    threads = max(1, jobs // workers) if jobs > 1 and len(work) > 1 else jobs
    if jobs > 1 and len(work) > 1:
        import multiprocessing

        # forkserver: workers start from a clean, single-threaded server, not from this process.
        # The server imports the rendering modules once (about 1.5 s here) and every worker forks
        # from it; a first no-op task starts it while the first takes are spoken
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        context = multiprocessing.get_context(method)
        if method == "forkserver":
            context.set_forkserver_preload(["calmplace._forkserver_preload", *_RENDER_MODULES])
        import os

        spare = _SpareCpuLedger(context, jobs=jobs, workers=workers, threads=threads)
        pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                                      initializer=_workers.start_worker,
                                                      initargs=(os.getpid(), spare.cpus))
        # submits in their own thread, in order: the first waits until the server has imported
        # everything and forked its first worker, and this thread goes on speaking meanwhile
        submitter = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="calmplace-submit")
        submitter.submit(pool.submit, _import_render_modules)
    # new takes go into the cache from a thread of their own (each file is synced to disk: 0.23 s
    # for the shipped script's 44 takes, which a lone track's rendering no longer waits for: it
    # is handed its new clips); other tracks read theirs from the cache once they are written
    writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="calmplace-cache")
    writes: list = []

    def put(key: str, clip: np.ndarray) -> None:
        writes.append(writer.submit(cache.put, key, clip))

    def written(track_writes: list) -> None:
        for w in track_writes:
            w.result()

    pending: list[tuple[TrackWork, object]] = []
    preload = None
    try:
        for item, engine in work:
            item = dataclasses.replace(item, threads=threads)
            # rendered here with CPUs to spare: generate the bed while the takes are spoken, and
            # import what rendering needs (numpy's and scipy's kernels, reportlab: 0.3-0.5 s here)
            # while this thread waits for the speech processes
            prefetch = None
            if pool is None and threads > 1:
                preload = preload or _Preload()
                prefetch = _bed_prefetch(item, after=preload.scipy_done)
            first_write = len(writes)
            try:
                with report.stage("speech"), _switching(0.0005 if prefetch else None):
                    fresh = synthesise(item, engine=engine, cache=cache, jobs=jobs, force=force, ui=ui, put=put)
            except CalmplaceError as exc:
                if prefetch:
                    prefetch.close()
                pending.append((item, exc))
                continue
            track_writes = writes[first_write:]
            if pool:
                submit = _after(written, track_writes, then=spare.watched(pool.submit))
                pending.append((item, submitter.submit(submit, render_track, item)))
            else:   # rendered below, once every track is spoken: only a lone track keeps its clips
                pending.append((item, (prefetch, fresh if len(work) == 1 else None, track_writes)))
        if pool:
            spare.all_submitted()
        with ui.progress("rendering tracks", len(pending)) as bar:
            for item, handle in pending:
                try:
                    if isinstance(handle, Exception):
                        result = handle
                    elif hasattr(handle, "result"):   # a submit's future of the render's
                        result = handle.result().result()
                    else:
                        prefetch, fresh, track_writes = handle
                        if fresh is None:
                            written(track_writes)
                        if preload is not None:
                            preload.wait()   # done by now, as a rule: the takes took longer
                        result = render_track(item, bed_prefetch=prefetch, fresh=fresh)
                except CalmplaceError as exc:
                    result = exc
                bar.update(1)
                yield item, result
        written(writes)   # a take that could not be cached fails the build, as it did when written at once
    except (KeyboardInterrupt, SystemExit):
        if pool is not None:   # CI QA: SIGINT to the build waited 9-17 s for the tracks being rendered
            _stop_workers(pool)
        raise
    finally:
        writer.shutdown()
        if pool is not None:
            submitter.shutdown()
            pool.shutdown(cancel_futures=True)


class _SpareCpuLedger:
    """Lends the CPUs of render workers that will get no more tracks to the tracks still being
    rendered (`_workers.SpareCpus`): two tracks on two CPUs rendered side by side each on one, and
    whichever ended first left its CPU idle while the other encoded its last pieces (about 1
    CPU-second of a two-locale build)."""

    def __init__(self, context, *, jobs: int, workers: int, threads: int):
        import threading

        self.threads, self.workers = threads, workers   # each track's own CPUs, and the pool's size
        # CPUs beyond the workers' own ones (jobs=3, two tracks: one) are spare from the start
        self.cpus = _workers.SpareCpus(context.Semaphore(jobs - workers * self.threads),
                                       most=max(0, jobs - self.threads))
        self.lock = threading.Lock()
        self.submitted = self.finished = self.lent = 0
        self.complete = False

    def watched(self, submit):
        """`submit` for one track, counting it in now (it is submitted later, from another thread:
        counted then, `all_submitted` could come first and lend a CPU a track is still to use),
        and out again when its render ends."""
        with self.lock:
            self.submitted += 1

        def run(*args):
            future = submit(*args)
            future.add_done_callback(self._ended)
            return future
        return run

    def all_submitted(self) -> None:
        with self.lock:
            self.complete = True
        self._settle()

    def _ended(self, _future) -> None:
        with self.lock:
            self.finished += 1
        self._settle()

    def _settle(self) -> None:
        """Once no more tracks will come, every worker beyond those still rendering is idle for good."""
        with self.lock:
            if not self.complete:
                return
            idle = self.workers - min(self.workers, self.submitted - self.finished)
            while self.lent < idle * self.threads:
                self.cpus.semaphore.release()
                self.lent += 1


def _stop_workers(pool) -> None:
    """End a process pool's workers now, mid-task (they only compute: the outputs are written by
    this process, atomically)."""
    stop = getattr(pool, "terminate_workers", None)   # Python 3.14
    if stop is not None:
        stop()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()


def _after(first, *args, then):
    """A function that calls first(*args), then returns then(*its own args)."""
    def run(*more):
        first(*args)
        return then(*more)
    return run


_MALLOC_TUNED = False


def _keep_freed_memory() -> None:
    """Have glibc's malloc keep memory the process frees, for the next allocation.

    A track's rendering allocates and frees blocks of a few MB thousands of times (bed blocks,
    encoder input, decoded stretches). By default glibc maps the larger ones afresh each time and
    hands freed memory back to the kernel, and every page then faults in again: 170,000 page
    faults and 1.2-1.5 s of system time for one track here (memory handed back to this virtual
    machine's host costs about 1.5 ms per MB to touch again). With blocks up to 32 MB taken from
    the heap and up to 256 MB of free heap kept, a jobs=1 track took 102,000 faults and 0.9-1.0 s.
    Arrays over 32 MB (whole tracks) are still mapped, and unmapped when freed.

    One arena: by default each thread that allocates (bed, encoder, meter threads) gets a heap of
    its own, which glibc trims as blocks are freed, so the same blocks faulted in again in every
    thread. With every thread on the main heap, a jobs=2 one-locale build made 61,000-78,000
    faults instead of 97,000-109,000, spent 0.42-0.58 s in the kernel instead of 0.62-1.20 s, and
    peaked at 595-641 MiB instead of 703-742 (7 pairs of runs). The threads allocate a few large
    blocks, not many small ones, so they seldom wait for its lock. Called before this process
    starts a thread: a thread that already has an arena keeps it."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8   # malloc.h
    mallopt(m_mmap_threshold, 32 << 20)   # the ceiling of glibc's own sliding threshold on 64-bit systems
    mallopt(m_trim_threshold, 256 << 20)
    mallopt(m_arena_max, 1)


@contextmanager
def _fewer_collections(gen0: int = GC_GEN0_THRESHOLD):
    """The garbage collector's first threshold raised to `gen0` for a while."""
    import gc

    before = gc.get_threshold()
    gc.set_threshold(max(gen0, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


@contextmanager
def _switching(interval_s: float | None):
    """Python's thread switch interval set to `interval_s` for a while (None: left alone)."""
    import sys

    before = sys.getswitchinterval()
    if interval_s is not None:
        sys.setswitchinterval(interval_s)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


# everything that loads scipy's kernels first: a bed prefetch waits for those (see _Preload)
_SCIPY_MODULES = ("calmplace.ambience.generators", "calmplace.master")
_RENDER_MODULES = _SCIPY_MODULES + ("calmplace.mix", "calmplace.encode", "calmplace.pdf", "calmplace.captions")


def _import_render_modules(names: tuple[str, ...] = _RENDER_MODULES) -> None:
    import importlib

    for name in names:
        importlib.import_module(name)


class _Preload:
    """`_import_render_modules` in a daemon thread, started at once (an import error surfaces
    later, where the module is used). Two threads importing one package at once can fail
    ("partially initialized module": seen with scipy), so the others wait: a bed prefetch for
    `scipy_done` (everything that loads scipy's kernels comes first), rendering for `wait()`."""

    def __init__(self):
        import threading

        self.scipy_done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="calmplace-preload", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            _import_render_modules(_SCIPY_MODULES)
            self.scipy_done.set()
            _import_render_modules()   # the rest (those already in cost nothing)
        except Exception:   # noqa: BLE001 - the import where the module is used reports it
            pass
        finally:
            self.scipy_done.set()

    def wait(self) -> None:
        self._thread.join()


def _bed_prefetch(item: TrackWork, *, after=None):
    """The track's first bed, generated ahead in a thread (see mix.BedPrefetch) once the event
    `after` is set (if given); None if the track starts without ambience."""
    from .mix import BedPrefetch, bed_seed

    sections = item.plan.sections
    if not sections or sections[0].ambience is None:
        return None
    sound, sr = sections[0].ambience.sound, item.settings.sr
    seed = bed_seed(item.job.script.id, 0, sound)   # the first run's seed, as mix.bed_runs gives it

    def open_source():
        if after is not None:
            after.wait()
        from .ambience import open_bed

        return open_bed(sound, sr=sr, seed=seed, ambience_dir=item.ambience_dir)

    return BedPrefetch(open_source, key=(sound, seed), likely_samples=_likely_length(item.plan, sr=sr))


def _likely_length(the_plan: Plan, *, sr: int, speech_s_per_char: float = 0.2) -> int:
    """A generous guess, before the takes are spoken, at how long a track will be: its pauses,
    and 0.2 s for every character spoken (5 characters a second, under half the pace of the
    shipped voice at 140 words a minute, about 13 a second; a slow reading voice manages 8-10)."""
    pauses_s = sum(e.seconds for e in the_plan.events if isinstance(e, Gap))
    chars = sum(len(take.text) for take in the_plan.takes)
    return int((pauses_s + speech_s_per_char * chars) * sr)


def render_track(item: TrackWork, *, bed_prefetch=None, fresh: dict[str, np.ndarray] | None = None) -> TrackResult:
    """One track's outputs, as bytes: timeline, mix, master and encode, PDF, captions. Pure but
    for reading the take cache and ambience files; runs in a worker process when jobs > 1.
    `bed_prefetch` (a mix.BedPrefetch) serves the first bed if it is the one the mix opens;
    `fresh` clips (by take key) are used instead of reading them from the cache."""
    from .captions import speech_gaps, webvtt
    from .encode import master_to_mp3
    from .master import InputMeter, bed_trim_db
    from .mix import bed_opener, mix, speech_hops
    from .pdf import script_pdf

    timings: dict[str, float] = {}
    _keep_freed_memory()   # in a worker process

    @contextmanager
    def stage(name: str):
        t0 = time.perf_counter()
        yield
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0

    job, sr, settings = item.job, item.settings.sr, item.settings
    if bed_prefetch is None and item.threads > 1:   # in a worker process: the bed beside the mix
        bed_prefetch = _bed_prefetch(item)
    try:
        cache = TakeCache(item.cache_root)
        the_plan = item.plan
        fresh = fresh or {}
        clips = [fresh[k] if k in fresh else cache.get(k) for k in item.take_keys]
        if any(c is None for c in clips):
            raise CalmplaceError("a spoken take went missing from the cache while building; build again")
        timeline = build_timeline(the_plan, [c.size for c in clips], sr=sr)
        with stage("mix"):
            meter = InputMeter(timeline.n_samples, sr=sr)   # measures for mastering as the mix is made
            samples = mix(timeline, clips, open_bed=bed_opener(item.ambience_dir, sr=sr, ready=bed_prefetch),
                          seed_base=job.script.id, on_ready=meter.advance)
    finally:
        if bed_prefetch is not None:
            bed_prefetch.close()   # stops its thread, also when the mix failed
    with stage("mix"):
        energies = meter.energies(samples, threads=item.threads)
        speech = speech_hops(timeline)
        trim_db, over_lu = bed_trim_db(energies, speech, n=timeline.n_samples, sr=sr)
        if trim_db:   # mostly ambience: mixed again with the beds lower, so the speech sets the loudness
            del samples
            meter = InputMeter(timeline.n_samples, sr=sr)
            samples = mix(timeline, clips, open_bed=bed_opener(item.ambience_dir, sr=sr), seed_base=job.script.id,
                          on_ready=meter.advance, bed_trim_db=trim_db)
            energies = meter.energies(samples, threads=item.threads)
    with stage("captions"):
        gaps = [speech_gaps(clip, sr=sr) for clip in clips]   # to time the captions inside each take
    warnings = _sparse_speech(clips, energies, n=timeline.n_samples, sr=sr, target_lufs=settings.target_lufs)
    if trim_db:
        share = float(speech.mean())
        warnings += (f"the ambience is {-trim_db:g} dB further under the voice than level_db asks: speech fills "
                     f"only {share:.0%} of the track, and at level_db the ambience would set the track's "
                     f"integrated loudness (what the {settings.target_lufs:g} LUFS target measures), and "
                     f"mastering would lift the voice {over_lu:.1f} LU over it, into the limiter",)
    del clips

    def documents() -> tuple[bytes, bytes]:
        with stage("pdf"):
            pdf = script_pdf(the_plan, timeline, script_path=item.script_shown)
        with stage("captions"):
            vtt = webvtt(the_plan, timeline, gaps=gaps).encode("utf-8")
        return pdf, vtt

    side = None
    if item.threads > 1:  # the PDF and captions are written beside the mastering
        from concurrent.futures import ThreadPoolExecutor

        side = ThreadPoolExecutor(max_workers=1)
        docs = side.submit(documents)
    try:
        with stage("master+encode"):
            mp3, measured = master_to_mp3(samples, sr=sr, target_lufs=settings.target_lufs,
                                          ceiling_dbtp=settings.ceiling_dbtp, bitrate_kbps=settings.bitrate_kbps,
                                          tags=_tags(the_plan), chapters=_chapters(timeline), threads=item.threads,
                                          energies=energies, spare_cpus=_workers.SPARE_CPUS)
        del samples
        pdf, vtt = docs.result() if side else documents()
    finally:
        if side:
            side.shutdown()
    return TrackResult({"mp3": mp3, "pdf": pdf, "vtt": vtt}, timeline.duration_s, len(the_plan.takes), measured,
                       timings, warnings, bed_trim_db=trim_db)


SPARSE_SPEECH_LU = 6.0   # the voice this far over the programme loudness: its peaks meet the limiter hard


def _sparse_speech(clips: list[np.ndarray], energies: np.ndarray, *, n: int, sr: int,
                   target_lufs: float) -> tuple[str, ...]:
    """A warning when mastering will lift the voice far over the track's loudness. The mix holds
    the voice at REFERENCE_LUFS (mix.speech_gain) and the beds under it; mastering brings the whole
    track to `target_lufs` integrated, so where speech is sparse among long pauses the gain that
    takes a quiet track there puts the voice well above it, and the true-peak limiter then takes
    many dB off every phrase (QA: four short takes over 97 s of bed were limited by up to 18 dB)."""
    from .ambience import REFERENCE_LUFS
    from .master import integrated_from_energies
    from .mix import levels_voice

    if not levels_voice(clips, sr=sr):   # the voice is as spoken, not at REFERENCE_LUFS
        return ()
    mix_lufs = integrated_from_energies(energies, n=n, sr=sr)
    if not np.isfinite(mix_lufs):
        return ()
    voice_lufs = REFERENCE_LUFS + (target_lufs - mix_lufs)
    if voice_lufs - target_lufs <= SPARSE_SPEECH_LU:
        return ()
    over = voice_lufs - target_lufs
    return (f"the voice will be mastered to about {int(round(voice_lufs))} LUFS, {int(round(over))} LU over the "
            f"track's {target_lufs:g} LUFS: the track is mostly ambience, so its integrated loudness (what the "
            f"{target_lufs:g} LUFS delivery target measures) is mostly the ambience's, and the gain that brings it "
            f"there lifts the voice into the limiter, which squashes every phrase, and the ambience as far, to "
            f"much less than level_db under the voice. To keep the voice clear, put the long silent stretches in "
            f"sections of their own with `ambience: none` (silence does not count), shorten them, or build with "
            f"a lower --loudness",)


def _write_track(item: TrackWork, result: TrackResult, *, out_dir: Path, manifest: Manifest, report: Report,
                 ui) -> None:
    job, measured = item.job, result.measured
    paths = output_paths(out_dir, job)
    with report.stage("write"):
        for ext, data in result.outputs.items():
            atomic_write(paths[ext], data)
            entry = {"sha256": sha256_bytes(data), "key": item.output_key, "script": job.script.id,
                     "locale": job.locale}
            manifest.wrote(paths[ext], entry["sha256"])
            if ext == "mp3":
                entry.update(duration_s=round(result.duration_s, 3),
                             integrated_lufs=_json_number(measured.integrated_lufs),
                             true_peak_dbtp=_json_number(measured.true_peak_dbtp),
                             loudness_range_lu=_json_number(measured.loudness_range_lu))
                if result.bed_trim_db:   # for `calmplace plot`, which draws the beds' level
                    entry["bed_trim_db"] = result.bed_trim_db
            manifest.set(paths[ext].relative_to(out_dir).as_posix(), entry)
    for name, seconds in result.timings_s.items():
        report.timings_s[name] = report.timings_s.get(name, 0.0) + seconds
    report.built += 1
    report.tracks.append({"label": job.label, "duration_s": result.duration_s, "takes": result.n_takes,
                          "integrated_lufs": measured.integrated_lufs, "true_peak_dbtp": measured.true_peak_dbtp,
                          "loudness_range_lu": measured.loudness_range_lu, "mp3": str(paths["mp3"])})
    # LRA needs 3 s of short-term loudness (EBU Tech 3342): none for a shorter track
    lra = measured.loudness_range_lu
    lra_text = f"LRA {lra:.1f} LU" if math.isfinite(lra) else "LRA n/a"
    ui.info(f"{job.label}: {format_clock(result.duration_s)}, "
            f"{result.n_takes} take{'s' if result.n_takes != 1 else ''}, "
            f"{measured.integrated_lufs:.1f} LUFS, {lra_text}, "
            f"true peak {measured.true_peak_dbtp:.1f} dBTP → {paths['mp3'].parent}/")
    for warning in result.warnings:
        ui.info(f"{job.label}: warning: {warning}")


class BuildLock:
    """One build at a time per output folder (fcntl lock on `<out>/.lock`); the holder also
    sweeps the temp files that a killed build left behind (fsio.sweep_temp_files: calmplace's
    own temp names only, in the folders calmplace writes).

    The take cache may be shared by builds into other output folders (a CI cache): each build
    holds a shared lock on `<cache>/.lock`, and the cache's take folders are swept only by a
    build that could take it exclusively, so never under another build's feet. A cache folder
    that cannot be written is not locked (nothing will be written there).

    An output folder that cannot be written (read-only) is not an error here: a build with
    nothing to do needs no write access. The build then holds a shared lock on an existing
    `.lock` (so it waits for a build writing there to finish) and `write_error` says why it
    could not write; a build with something to write stops on it before rendering."""

    TEMPLATE_MIN_AGE_S = 300.0   # `calmplace template` writes there without this lock

    def __init__(self, out_dir: Path, *, ui, enabled: bool = True, cache_root: Path | None = None,
                 reading: bool = False):
        self.path = out_dir / ".lock"
        self.out_dir = out_dir
        self.cache_root = cache_root
        self.ui = ui
        self.enabled = enabled
        self.reading = reading   # `build --check`: writes nothing, but waits for a build writing there
        self.fd: int | None = None
        self.cache_fd: int | None = None
        self.write_error: OSError | None = None

    def _open_for_writing(self) -> int:
        import os

        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)

    def _wait(self, mode: int) -> None:
        _flock_waiting(self.fd, mode, ui=self.ui,
                       waiting=f"waiting for another calmplace build using {self.path.parent}/ to finish...")

    def _wait_to_read(self, fcntl, os) -> None:
        """A shared lock on an existing `.lock` (waiting for a build writing there); none if
        there is no `.lock`: no calmplace build ever wrote here."""
        try:
            self.fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return
        self._wait(fcntl.LOCK_SH)

    def __enter__(self):
        if not self.enabled:
            return self
        import fcntl
        import os

        if self.reading:
            self._wait_to_read(fcntl, os)
            return self
        try:
            self.fd = self._open_for_writing()
        except OSError as exc:   # a read-only output folder: fine as long as nothing needs writing
            self.write_error = exc
            self._wait_to_read(fcntl, os)
            return self
        self._wait(fcntl.LOCK_EX)
        out = self.out_dir
        sweep_temp_files(out)   # the manifest's folder
        for sub in _subfolders(out):   # the locale folders (and a preview's ambience/)
            sweep_temp_files(sub)
        for sub in _subfolders(out / "templates"):
            sweep_temp_files(sub, min_age_s=self.TEMPLATE_MIN_AGE_S)
        if self.cache_root is not None:
            self._lock_cache(fcntl, os)
        return self

    def _lock_cache(self, fcntl, os) -> None:
        try:
            self.cache_root.mkdir(parents=True, exist_ok=True)
            self.cache_fd = os.open(self.cache_root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:   # read-only or not a folder: the build finds out when it writes a take
            return
        try:
            fcntl.flock(self.cache_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:   # another build is using the cache: no sweeping
            fcntl.flock(self.cache_fd, fcntl.LOCK_SH)
            return
        sweep_temp_files(self.cache_root, of=OUTPUT_STATS)
        sweep_temp_files(self.cache_root / "takes")   # _writable_cache's probe
        for sub in _subfolders(self.cache_root / "takes"):
            sweep_temp_files(sub)
        fcntl.flock(self.cache_fd, fcntl.LOCK_SH)

    def __exit__(self, *exc):
        import os

        for name in ("cache_fd", "fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)  # closing releases the lock
                setattr(self, name, None)
        return False


def _flock_waiting(fd: int, mode: int, *, ui, waiting: str) -> None:
    """flock(fd, mode), saying `waiting` first when another process holds the lock."""
    import fcntl

    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        ui.info(waiting)
        fcntl.flock(fd, mode)


def _subfolders(folder: Path) -> list[Path]:
    """The folders directly in `folder` (not symlinks); none if it cannot be read."""
    import os

    try:
        return [Path(e.path) for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def track_timeline(project: Project, name: str, locale: str | None, *, settings: Settings = Settings(),
                   out_dir: Path | None = None, cache_dir: Path | None = None, ui=None,
                   engine_factory: Callable[[VoiceProfile], object] | None = None) -> tuple[TrackWork, Timeline]:
    """One script's track (its job, plan and output key) and timeline in a locale (its first when
    None), speaking missing takes."""
    ui = ui or NullUI()
    engine_factory = engine_factory or (lambda profile: make_engine(profile, settings, ui))
    jobs, problems = gather(project, (name,), settings=settings)
    if problems:
        raise WordedErrors("\n".join(problems))
    chosen = [j for j in jobs if locale is None or j.locale == locale]
    if not chosen:
        raise CalmplaceError(f"{name} has no locale {locale!r} (it has {', '.join(j.locale for j in jobs)})")
    job = chosen[0]
    out_dir = out_dir or project.root / "build"
    cache = TakeCache(cache_dir or out_dir / ".cache")
    engine = engine_factory(job.profile)
    item = _plan_track(job, engine=engine, project=project, out_dir=out_dir, cache=cache, settings=settings)
    synthesise(item, engine=engine, cache=cache, jobs=1, force=False, ui=ui)
    lengths = [cache.get(k).size for k in item.take_keys]
    return item, build_timeline(item.plan, lengths, sr=settings.sr)


def _is_within(path: Path, folder: Path) -> bool:
    """True if `path` is `folder` or inside it (both resolved)."""
    return path == folder or folder in path.parents


def takes_in_use(project: Project, *, settings: Settings = Settings(),
                 engine_factory: Callable[[VoiceProfile], object] | None = None) -> set[str]:
    """The take keys a build of the whole library (every script, every locale, each script's own
    voice) reads from the cache: what `clean --unused` keeps. A recorded voice's missing takes
    count with the synthetic voice that `--fallback-tts` would speak them in.

    Raises CalmplaceError listing the problems when a script has errors or a track cannot be
    planned: what it would use cannot be told then, so nothing may be called unused."""
    settings = dataclasses.replace(settings, fallback_tts=True)
    real_engines = engine_factory is None
    engine_factory = engine_factory or (lambda profile: make_engine(profile, settings))
    track_jobs, problems = gather(project, (), settings=settings)
    if real_engines:
        problems += voiceless(track_jobs)
    planned, unplanned = _plan_each(
        [] if problems else track_jobs, engine_factory,
        lambda job, engine: engine.take_keys(plan(job.script, job.locale).takes, script_id=job.script.id,
                                             locale=job.locale, sr=settings.sr))
    problems += unplanned
    if problems:
        raise CalmplaceError("nothing removed: which takes the scripts use cannot be told while they have "
                             "errors:\n" + "\n".join(problems))
    return {key for keys, _engine in planned for key in keys}


def clean(out_dir: Path, cache_dir: Path | None = None, *, project_root: Path | None = None, ui=None,
          keep: Callable[[], set[str]] | None = None) -> list[Path]:
    """Remove calmplace's own entries from the take cache: the clips under `takes/` (and temp
    files a killed build left there), the emptied `takes/` folders and the `.lock` file, then the
    cache folder itself if nothing else is in it. Files of other tools stay. Return the take files removed.

    With `keep` (a function giving take keys, as `takes_in_use` does; called once the cache is
    locked, so no build adds takes between it and the removal), only the other clips and the
    temp files go: the cache stays, with what the library's next build would read.

    A cache folder that is the project's root, the output folder, or a folder holding either is
    refused (CalmplaceError) before anything is touched: a cache is a folder of its own."""
    target = Path(cache_dir) if cache_dir is not None else Path(out_dir) / ".cache"
    if not str(target).strip() or not str(out_dir).strip():
        raise CalmplaceError("the cache folder and the output folder must not be empty paths")
    resolved, out_resolved = target.resolve(), Path(out_dir).resolve()
    root = (project_root or Path.cwd()).resolve()
    if _is_within(root, resolved):
        raise CalmplaceError(f"refusing to clean {target}: it is the project folder or holds it; "
                             f"give the take cache a folder of its own (--cache-dir)")
    if _is_within(out_resolved, resolved):
        raise CalmplaceError(f"refusing to clean {target}: it is the output folder {out_dir} or holds it; "
                             f"give the take cache a folder of its own (--cache-dir)")
    with _cache_exclusively(target, ui=ui or NullUI()):
        return _clean(target, keep=keep() if keep is not None else None)


@contextmanager
def _cache_exclusively(target: Path, *, ui):
    """The take cache's lock (BuildLock's `<cache>/.lock`) held exclusively, waiting (and saying
    so) while builds use the cache (CI QA: clean removed the takes under a running build, which
    then failed, and unlinked the lock it held). A cache that is no folder, or cannot be written
    (there is nothing clean could remove then), is not locked."""
    import fcntl
    import os

    fd = None
    if target.is_dir() and not target.is_symlink():
        try:
            fd = os.open(target / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            fd = None
    try:
        if fd is not None:
            _flock_waiting(fd, fcntl.LOCK_EX, ui=ui,
                           waiting=f"waiting for the calmplace builds using {target}/ to finish...")
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _clean(target: Path, *, keep: set[str] | None = None) -> list[Path]:
    takes = target / "takes"
    removed: list[Path] = []
    if takes.is_dir() and not takes.is_symlink():
        for sub in sorted(takes.iterdir()):
            if not (sub.is_dir() and not sub.is_symlink() and len(sub.name) == 2):
                continue
            for entry in sorted(sub.iterdir()):   # the clips: <key>.npy, in the folder named for key[:2]
                if (entry.suffix == ".npy" and entry.name.startswith(sub.name)
                        and (entry.is_file() or entry.is_symlink()) and (keep is None or entry.stem not in keep)):
                    entry.unlink()
                    removed.append(entry)
            removed += sweep_temp_files(sub)   # and atomic_write's temp files a killed build left
            _rmdir_if_empty(sub)
        _rmdir_if_empty(takes)
    if keep is not None:   # the cache stays in use
        return removed
    for own in (target / ".lock", target / OUTPUT_STATS):   # BuildLock's, and the outputs' stats
        if own.is_file() and not own.is_symlink():
            own.unlink()
    removed += sweep_temp_files(target, of=OUTPUT_STATS)
    if target.is_dir() and not target.is_symlink():
        _rmdir_if_empty(target)
    return removed


def _rmdir_if_empty(folder: Path) -> None:
    import os

    try:
        os.rmdir(folder)
    except OSError:   # not empty (someone else's files), or gone already
        pass


def _json_number(value: float) -> float | None:
    """Rounded for the manifest; None where a measure is undefined (LRA of a track under 3 s), as
    strict JSON has no NaN or infinity."""
    import math

    return round(value, 2) if math.isfinite(value) else None


def _tags(p: Plan):
    from .encode import Tags

    return Tags(title=p.title, artist=p.author, album=p.collection, comment=p.description,
                language=_ISO639_2.get(p.locale.split("-")[0].lower(), "und"))


def _chapters(timeline: Timeline):
    from .encode import Chapter

    return [Chapter(title=s.title or f"Part {s.index + 1}", start_s=s.start / timeline.sr, end_s=s.end / timeline.sr)
            for s in timeline.sections]
