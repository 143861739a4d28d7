"""Golden cases for the script and takes stages: adding a case means adding a file.

tests/cases/plan/<id>.yaml   → <id>.expected: every locale's events and timeline (fake engine)
tests/cases/errors/<id>.yaml → <id>.expected: the exact error text, with line and column
Run `pytest --update-golden` (or CALMPLACE_UPDATE_GOLDEN=1) to rewrite them after a deliberate change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from calmplace import SR
from calmplace.errors import ScriptErrors
from calmplace.script import load_script
from calmplace.speech.fake import FakeEngine
from calmplace.takes import Gap, SectionStart, Take, plan
from calmplace.timeline import build_timeline

CASES = Path(__file__).parent / "cases"


def render_plan(path: Path) -> str:
    script = load_script(path, display_path=path.name)
    engine = FakeEngine()
    lines = []
    for locale in script.locales:
        p = plan(script, locale)
        lines.append(f"== {locale}: {p.title!r}")
        for e in p.events:
            if isinstance(e, Gap):
                flags = "".join(f for f, on in (("C", e.cue), ("P", e.paragraph)) if on)
                lines.append(f"  gap {e.seconds:g}s {e.kind} {flags}".rstrip())
            elif isinstance(e, SectionStart):
                a = e.ambience
                bed = "" if a is None else (f" ambience {a.sound} level {a.level_db:g} dB duck {a.duck_db:g} dB "
                                            f"fades {a.fade_in_s:g}s/{a.fade_out_s:g}s")
                lines.append(f"  section {e.index} {e.title!r}{bed}")
            elif isinstance(e, Take):
                lines.append(f"  take {e.name} §{e.section} before={e.pause_before_s:g}s after={e.pause_after_s:g}s "
                             f"{e.text!r}")
        clips = [engine.speak_text(t.text, sr=SR) for t in p.takes]
        tl = build_timeline(p, [c.size for c in clips], sr=SR)
        lines.append(f"  timeline n_samples={tl.n_samples}")
        lines.extend(f"    take {s.take.name} [{s.start}, {s.end})" for s in tl.takes)
        lines.extend(f"    chapter {s.index} [{s.start}, {s.end}) {s.title!r}" for s in tl.sections)
    return "\n".join(lines) + "\n"


def render_errors(path: Path) -> str:
    with pytest.raises(ScriptErrors) as info:
        load_script(path, display_path=path.name)
    return str(info.value) + "\n"


def _cases(kind: str) -> list[Path]:
    return sorted((CASES / kind).glob("*.yaml"))


def _check(actual: str, expected_path: Path, update: bool) -> None:
    if update or not expected_path.exists():
        expected_path.write_text(actual)
        if not update:
            pytest.fail(f"wrote new golden file {expected_path.name}: check it and commit it")
    assert actual == expected_path.read_text()


@pytest.mark.parametrize("path", _cases("plan"), ids=lambda p: p.stem)
def test_plan_golden(path: Path, update_golden: bool) -> None:
    _check(render_plan(path), path.with_suffix(".expected"), update_golden)


@pytest.mark.parametrize("path", _cases("errors"), ids=lambda p: p.stem)
def test_error_golden(path: Path, update_golden: bool) -> None:
    _check(render_errors(path), path.with_suffix(".expected"), update_golden)
