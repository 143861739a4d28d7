"""What an author meets writing scripts: problems reported where they are, with useful hints.

Most cases are golden files (tests/cases/errors, tests/cases/plan); these need a project folder,
the command line, or look at a value the golden files do not show.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from calmplace.build import gather
from calmplace.errors import Problem, line_col, split_lines
from calmplace.script import Project, apply_spelling, load_script
from calmplace.takes import plan
from calmplace.units import parse_duration

from helpers import invoke_cli


def test_two_scripts_with_one_id_are_an_error(project: Path):
    tiny = (project / "scripts" / "tiny.yaml").read_text()
    (project / "scripts" / "dup.yaml").write_text(tiny)
    (project / "scripts" / "dup.yml").write_text(tiny)
    result = invoke_cli(project, "check")
    assert result.exit_code == 1, result.output
    assert ("scripts/dup.yml:1:1: error: script id 'dup' is used by both scripts/dup.yaml and scripts/dup.yml"
            in result.output)
    assert "Traceback" not in result.output
    named = invoke_cli(project, "check", "dup")  # naming one of them does not hide the other
    assert named.exit_code == 1 and "is used by both" in named.output


def test_a_script_named_twice_is_built_once(project: Path, monkeypatch):
    monkeypatch.chdir(project)
    jobs, problems = gather(Project(project), ("scripts/tiny.yaml", "tiny"))
    assert problems == []
    assert [(j.script.id, j.locale) for j in jobs] == [("tiny", "en-GB"), ("tiny", "en-US")]


def test_a_builtin_sound_in_the_wrong_case_gets_a_hint(project: Path):
    path = project / "scripts" / "tiny.yaml"
    path.write_text(path.read_text().replace("{sound: stream,", "{sound: Stream,"))
    result = invoke_cli(project, "check")
    assert result.exit_code == 1
    assert "unknown ambience sound 'Stream' (did you mean 'stream'?)" in result.output


def test_voice_profile_errors_name_the_file_as_scripts_are_named(project: Path):
    path = project / "voices" / "narrator.yaml"
    path.write_text(path.read_text().replace("rate:", "rat:"))
    result = invoke_cli(project, "check")
    assert result.exit_code == 1
    assert result.output.startswith("voices/narrator.yaml:"), result.output
    assert str(project) not in result.output


def test_folded_description_keeps_its_paragraphs(tmp_path: Path):
    path = tmp_path / "desc.yaml"
    path.write_text("title: T\ndescription: >\n  First paragraph,\n  two lines.\n\n  Second one.\n"
                    "locales: [en-GB]\nsections: [{text: Hello.}]\n")
    script = load_script(path)
    assert plan(script, "en-GB").description == "First paragraph, two lines.\n\nSecond one."


def test_spelling_words_with_punctuation_at_an_edge():
    assert apply_spelling("Mr. Smith's colour", {"Mr.": "Mister"}) == "Mister Smith's colour"
    assert apply_spelling("see ... then", {"...": "and"}) == "see and then"
    table = {"colour": "color"}
    assert apply_spelling("colourful recolour colour.", table) == "colourful recolour color."


@pytest.mark.parametrize("text", ["010", "+10", "10.", "10s"])
def test_a_duration_is_read_as_decimal(text):
    assert parse_duration(text) == 10.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), ".nan", ".NaN", "0b11", "0x10", "0o7", "1:30"])
def test_durations_yaml_would_read_as_numbers_are_refused(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_lines_are_counted_at_yaml_line_breaks():
    text = "a\rb\r\nc\u2028d\x85e\nf\x0cg"
    assert [line_col(text, text.index(ch)) for ch in "abcdefg"] == [
        (1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1), (6, 3)]
    assert split_lines(text) == ["a", "b", "c", "d", "e", "f\x0cg"]  # a form feed is not a line break


def test_caret_follows_tabs_and_wide_characters():
    shown = Problem("x.yaml", 1, 4, "m", "\t静か[x").format().splitlines()
    assert shown[1:] == ["    \t静か[x", "    \t    ^"]


def test_run_outside_the_project_folder_says_where_to_run(project: Path, tmp_path_factory):
    """QA: run from scripts/, `check` said 'scripts/scripts: no scripts found'; run elsewhere with a
    script's path, the build said 'unknown voice narrator'. Both now name the project folder."""
    inside = invoke_cli(project / "scripts", "check")
    assert inside.exit_code == 1 and "Traceback" not in inside.output
    assert f"is not a calmplace project (it has no scripts/ or voices/ folder): run calmplace in {project}" \
        in inside.output, inside.output
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    named = invoke_cli(elsewhere, "build", str(project / "scripts" / "tiny.yaml"))
    assert named.exit_code == 1 and f"run calmplace in {project}" in named.output, named.output
    assert not (elsewhere / "build").exists()   # nothing written
    assert invoke_cli(project, "check").exit_code == 0
    # regression QA: a project with only voices/ (scripts kept elsewhere) counts too, and a script
    # named from inside scripts/ is given the path it has from the folder to run in
    (project / "scripts" / "tiny.yaml").rename(elsewhere / "tiny.yaml")
    (project / "scripts").rmdir()
    (project / "voices" / "sub").mkdir()
    voices_only = invoke_cli(project / "voices" / "sub", "check", str(elsewhere / "tiny.yaml"))
    assert f"run calmplace in {project / 'voices'}" not in voices_only.output
    assert f"run calmplace in {project}" in voices_only.output, voices_only.output
    (project / "scripts").mkdir()
    (elsewhere / "tiny.yaml").rename(project / "scripts" / "tiny.yaml")
    named = invoke_cli(project / "scripts", "check", "tiny.yaml")
    assert f"run calmplace in {project}, where the script is scripts/tiny.yaml" in named.output, named.output
