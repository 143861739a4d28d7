"""A recorded voice's profile names a fallback voice that cannot be used: template and takes status
say so at once (not only `build --fallback-tts`), as does check, and template still estimates from the words."""

from __future__ import annotations

from pathlib import Path

from calmplace.voices import load_voice

from test_recorded import run_cli, take_folder, write_takes


def test_a_missing_fallback_voice_is_named_by_status_and_template(project: Path, monkeypatch):
    write_takes(project)
    (project / "voices" / "therapist.yaml").write_text("engine: recorded\nfallback: ghost\n")
    want = "voices/therapist.yaml: fallback voice 'ghost' not found (voices/ghost.yaml)"
    status = run_cli(project, monkeypatch, "takes", "status", "tiny", "--voice", "therapist", "--locale", "en-GB")
    assert want in status.output and "4 of 4 takes ok" in status.output, status.output
    assert status.exit_code == 0  # the takes are fine; only --fallback-tts needs the fallback
    template = run_cli(project, monkeypatch, "template", "tiny", "--voice", "therapist", "--locale", "en-GB")
    assert template.exit_code == 0, template.output
    assert want in template.output and "expected take lengths come from the word count" in template.output
    # the lengths are still estimated, from the words, and the summary says why
    assert "lengths from words at 150 words a minute (no usable fallback voice" in template.output, template.output
    assert (project / "build" / "templates" / "en-GB" / "tiny-takes.csv").is_file()
    assert "Traceback" not in status.output + template.output
    # check, for a script spoken by that voice: the script is fine (exit 0) and the warning is there
    script = project / "scripts" / "tiny.yaml"
    script.write_text("voice: therapist\n" + script.read_text())
    check = run_cli(project, monkeypatch, "check", "tiny")
    assert check.exit_code == 0 and want in check.output and "1 script OK" in check.output, check.output
    # and build --fallback-tts, for a missing take, says the same (QA: "unknown voice 'ghost'", the
    # recorded voices listed as if they could stand in)
    (take_folder(project) / "002.flac").unlink()
    build = run_cli(project, monkeypatch, "build", "tiny", "--locale", "en-GB", "--fallback-tts")
    assert build.exit_code == 1 and want in build.output and "unknown voice" not in build.output, build.output
    (project / "voices" / "therapist.yaml").write_text("engine: recorded\n")   # narrator: no warning
    check = run_cli(project, monkeypatch, "check", "tiny")
    assert check.exit_code == 0 and "warning" not in check.output, check.output


def test_load_fallback(project: Path, monkeypatch):
    from calmplace.voices import load_fallback

    monkeypatch.chdir(project)
    voices = project / "voices"
    (voices / "maria.yaml").write_text("engine: recorded\n")                   # default: narrator
    (voices / "carol.yaml").write_text("engine: recorded\nfallback: maria\n")  # a recorded voice
    (voices / "dan.yaml").write_text("engine: recorded\nfallback: broken\n")
    (voices / "broken.yaml").write_text("engine: [\n")
    tts, why = load_fallback(load_voice("maria", voices_dir=voices), voices_dir=voices)
    assert tts is not None and tts.name == "narrator" and why is None
    tts, why = load_fallback(load_voice("carol", voices_dir=voices), voices_dir=voices)
    assert tts is None and why.startswith("voices/carol.yaml: fallback voice 'maria' is not a text-to-speech voice")
    tts, why = load_fallback(load_voice("dan", voices_dir=voices), voices_dir=voices)
    assert tts is None and why.startswith("voices/dan.yaml: fallback voice 'broken' cannot be used: "), why
    narrator = load_voice("narrator", voices_dir=voices)
    assert load_fallback(narrator, voices_dir=voices) == (narrator, None)


def test_a_voice_name_that_cannot_be_a_file_name_is_a_usage_error(project: Path, monkeypatch):
    # QA: `--voice "Maria Smith"` made a template whose commands failed when pasted, and
    # `--voice ../evil` one that named voices/../evil.yaml, which status and build then refused
    for name, hint in (("Maria Smith", "'maria-smith'"), ("../evil", "'evil'")):
        for args in (("template", "tiny"), ("takes", "status", "tiny"), ("build",)):
            result = run_cli(project, monkeypatch, *args, "--voice", name)
            assert result.exit_code == 2, (args, result.output)
            assert f"{name!r} cannot name a voice" in result.output and hint in result.output
    assert not (project / "build").exists() and not (project / "voices" / "evil.yaml").exists()
    # a name in capitals is a file name all the same
    assert run_cli(project, monkeypatch, "template", "tiny", "--voice", "Maria_2").exit_code == 0


def test_a_misspelt_voice_in_the_template_gets_did_you_mean(project: Path, monkeypatch):
    # author QA: `template --voice narattor` wrote a template for voices/narattor/ with no word
    result = run_cli(project, monkeypatch, "template", "tiny", "--locale", "en-GB", "--voice", "narattor")
    assert result.exit_code == 0
    assert "note: there is no voices/narattor.yaml yet (did you mean 'narrator'?)" in result.output, result.output
    result = run_cli(project, monkeypatch, "template", "tiny", "--locale", "en-GB", "--voice", "maria")
    assert "did you mean" not in result.output
