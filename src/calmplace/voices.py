"""Voice profiles: `voices/<name>.yaml` → `VoiceProfile` (contract §4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from yaml.nodes import MappingNode, ScalarNode

from .errors import ScriptErrors, display_path
from .yamlsrc import Invalid, Source

ENGINES = ("tts", "recorded")
_KEYS = {"engine": True, "rate": False, "volume": False, "locales": False, "fallback": False}
_LOCALE_KEYS = {"prefer": True}
DEFAULT_RATE_WPM = 150  # a calm reading pace; espeak's own default (175) sounds hurried for imagery


@dataclass(frozen=True)
class VoiceProfile:
    name: str
    engine: str
    rate_wpm: int = DEFAULT_RATE_WPM
    volume: float = 1.0
    prefer: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # locale → preferred system voices
    fallback: str | None = None  # for recorded voices: the tts profile that fills missing takes
    path: str = ""

    def prefer_for(self, locale: str) -> tuple[str, ...]:
        """The profile's preferences for a locale; without any, the locale tag itself (en-GB → en-gb)."""
        return self.prefer.get(locale) or (locale.lower(),)


def load_voice(name: str, *, voices_dir: Path) -> VoiceProfile:
    path = voices_dir / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in voices_dir.glob("*.yaml"))
        from .errors import CalmplaceError

        raise CalmplaceError(f"unknown voice {name!r}: there is no {display_path(path)} "
                             f"(available: {', '.join(known) or 'none'})")
    src, node = Source.read(path, display_path=display_path(path),  # relative, as scripts' paths are
                            keys=frozenset(_KEYS) | frozenset(_LOCALE_KEYS))
    profile = None
    if node is not None:
        try:
            profile = _read(src, node, name)
        except Invalid:
            pass
    elif not src.problems.problems:
        src.error("the voice profile is empty: it needs at least `engine: tts` or `engine: recorded`", line=1, col=1)
    src.problems.raise_if_any()
    assert profile is not None
    return profile


def load_fallback(profile: VoiceProfile, *, voices_dir: Path) -> tuple[VoiceProfile | None, str | None]:
    """The text-to-speech voice that stands for a voice (itself, or a recorded voice's `fallback:`,
    default narrator), and None; or None and why there is none: "voices/maria.yaml: fallback voice
    'ghost' not found (voices/ghost.yaml)". A recorded voice's profile may name a fallback that does
    not exist (only `build --fallback-tts` needs it), so this is no error of the profile itself."""
    if profile.engine == "tts":
        return profile, None
    from .errors import CalmplaceError

    name = profile.fallback or "narrator"
    where = f"{display_path(profile.path)}: " if profile.path else ""
    path = Path(voices_dir) / f"{name}.yaml"
    if not path.is_file():
        return None, f"{where}fallback voice {name!r} not found ({display_path(path)})"
    try:
        fallback = load_voice(name, voices_dir=voices_dir)
    except CalmplaceError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"{where}fallback voice {name!r} cannot be used: {first}"
    if fallback.engine != "tts":
        return None, (f"{where}fallback voice {name!r} is not a text-to-speech voice ({display_path(path)} says "
                      f"engine: {fallback.engine}); a fallback speaks missing takes, so it needs engine: tts")
    return fallback, None


def _read(src: Source, node, name: str) -> VoiceProfile:
    entries = src.mapping(node, what="a voice profile", allowed=_KEYS)
    values: dict[str, object] = {}
    for key, (_, value) in entries.items():
        try:
            if key == "engine":
                engine = src.string(value, what="engine").strip()
                if engine not in ENGINES:
                    raise src.fail(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}", value)
                values[key] = engine
            elif key == "rate":
                values[key] = int(src.number(value, what="rate (words per minute)", low=60, high=400))
            elif key == "volume":
                values[key] = src.number(value, what="volume", low=0.0, high=1.0)
            elif key == "fallback":
                values[key] = src.string(value, what="fallback").strip()
            elif key == "locales":
                values[key] = _locales(src, value)
        except Invalid:
            pass
    if src.problems.problems or "engine" not in values:
        raise Invalid("voice")
    return VoiceProfile(name=name, engine=values["engine"], rate_wpm=values.get("rate", DEFAULT_RATE_WPM),
                        volume=values.get("volume", 1.0), prefer=values.get("locales", {}),
                        fallback=values.get("fallback"), path=str(src.path))  # the real path: takes live beside it


def _locales(src: Source, node) -> dict[str, tuple[str, ...]]:
    if not isinstance(node, MappingNode):
        raise src.fail("locales must map locale tags to {prefer: [...]}", node)
    out: dict[str, tuple[str, ...]] = {}
    for key_node, value_node in node.value:
        locale = key_node.value if isinstance(key_node, ScalarNode) else ""
        try:
            entries = src.mapping(value_node, what=f"voice locale {locale}", allowed=_LOCALE_KEYS)
            if "prefer" in entries:
                out[locale] = tuple(src.string_list(entries["prefer"][1], what="prefer"))
        except Invalid:
            pass
    return out


__all__ = ["VoiceProfile", "load_voice", "load_fallback", "ScriptErrors"]
