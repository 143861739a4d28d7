"""The example CI workflow (.github/workflows/tracks.yml) does what issue 5 asks of it: runs
`make tracks` when scripts/, voices/ or ambience/ change, keeps the cache, uploads build/."""

from pathlib import Path

import yaml

WORKFLOW = Path(__file__).resolve().parents[1] / ".github" / "workflows" / "tracks.yml"


def _workflow() -> dict:
    doc = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1)
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def _steps() -> list[dict]:
    (job,) = _workflow()["jobs"].values()
    return job["steps"]


def test_runs_when_inputs_change():
    on = _workflow()["on"]
    for event in ("push", "pull_request"):
        paths = on[event]["paths"]
        for folder in ("scripts", "voices", "ambience"):
            assert f"{folder}/**" in paths, (event, folder)


def test_builds_with_make_tracks_then_checks():
    runs = [step.get("run", "") for step in _steps()]
    make = next(i for i, run in enumerate(runs) if "make tracks" in run)
    check = next(i for i, run in enumerate(runs) if "build --check" in run)
    assert make < check


def test_the_saved_cache_keeps_only_the_takes_in_use():
    # actions/cache saves in its post step, after every step: a prune anywhere after the build counts
    runs = [step.get("run", "") for step in _steps()]
    make = next(i for i, run in enumerate(runs) if "make tracks" in run)
    prune = next(i for i, run in enumerate(runs) if "calmplace clean --unused" in run)
    assert make < prune


def test_cache_key_covers_every_trigger_path():
    """A cache hit is never saved again: every path that triggers a run (code included) must be in
    the key, or a run would restore outputs built from older inputs and rebuild them every time."""
    (cache,) = [s for s in _steps() if s.get("uses", "").startswith("actions/cache")]
    paths = cache["with"]["path"].split()
    # every locale's outputs (CI QA: `build/en-*` left out any other language's)
    assert "build/.cache" in paths and "build/manifest.json" in paths
    assert {"build/*/*.mp3", "build/*/*.pdf", "build/*/*.vtt"} <= set(paths)
    key = cache["with"]["key"]
    for pattern in _workflow()["on"]["push"]["paths"]:
        assert f"'{pattern}'" in key, pattern


def test_uploads_build_without_the_cache():
    (upload,) = [s for s in _steps() if s.get("uses", "").startswith("actions/upload-artifact")]
    paths = upload["with"]["path"].split()
    assert "build/" in paths and "!build/.cache/" in paths
