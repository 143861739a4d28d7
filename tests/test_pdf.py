"""The printed script, the recording template and the takes CSV (contract §5)."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from pathlib import Path

import pypdf
import pytest

from calmplace.pdf import script_pdf, takes_csv, template_pdf
from calmplace.pdf_glyphs import _RANGES, describe_chars, unprintable
from calmplace.script import load_script
from calmplace.takes import plan
from calmplace.timeline import build_timeline
from calmplace.units import format_clock

SR = 44_100
SECONDS_PER_WORD = 0.4  # a calm reading pace (150 wpm); only needs to be plausible

SCRIPT = """\
title: Calm Place Imagery
collection: Developing Self-Compassion
author: Ada & Co <calm>
description: |
  Guided imagery to build a place that feels calm and welcoming.

  Read slowly, in a warm voice.
locales: [en-GB, en-US]
lead_in: 3s
tail: 10s
spelling:
  en-US: {colour: color, favourite: favorite}
sections:
  - title: Settling in
    text: |
      Find a position where you can be comfortable. [pause 3s]
      Let your eyes close, or rest your gaze softly on the floor.

      Notice the colour of the light behind your eyelids. [pause 10s]
    pause_after: 5s
  - title: {en-GB: Your favourite place, en-US: Your favourite place}
    text: |
      Imagine a place that could feel calm and safe for you. [pause 1m30s]
      Look around you. What can you see?

      What can you hear? [pause]
  - text: |
      Your calm place welcomes you. [pause 20s]
      Notice the warmth in your face.
references:
  - "Gilbert, P. (2010). Compassion Focused Therapy: Distinctive Features. Routledge."
  - Gilbert, P. (2014). The origins and nature of compassion focused therapy. British Journal of Clinical Psychology, 53(1), 6-41.
"""


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = Path(tmp_path_factory.mktemp("scripts")) / "calm-place.yaml"
    path.write_text(SCRIPT, encoding="utf-8")
    return load_script(path)


def make(script, locale: str):
    p = plan(script, locale)
    lengths = [int(SECONDS_PER_WORD * len(t.text.split()) * SR) for t in p.takes]
    return p, build_timeline(p, lengths, sr=SR), [n / SR for n in lengths]


def flat(text: str) -> str:
    """Whitespace folded: words wrapped across lines and pages compare as one string."""
    return " ".join(text.replace("\u00a0", " ").split())


def pdf_pages(data: bytes) -> list[str]:
    return [page.extract_text() or "" for page in pypdf.PdfReader(io.BytesIO(data)).pages]


def pdf_text(data: bytes) -> str:
    return flat(" ".join(pdf_pages(data)))


def pdftotext(data: bytes, tmp_path: Path) -> str | None:
    if shutil.which("pdftotext") is None:
        return None
    path = tmp_path / "doc.pdf"
    path.write_bytes(data)
    return flat(subprocess.run(["pdftotext", str(path), "-"], check=True, capture_output=True,
                               text=True).stdout)


def extractions(data: bytes, tmp_path: Path) -> list[str]:
    """The text as pypdf sees it, and as poppler sees it when installed: both must find everything."""
    return [t for t in (pdf_text(data), pdftotext(data, tmp_path)) if t is not None]


# ------------------------------------------------------------------------------------------------
# The audio script


def test_script_pdf_has_front_matter_sections_cues_and_references(script, tmp_path):
    p, tl, _ = make(script, "en-GB")
    data = script_pdf(p, tl, script_path="scripts/calm-place.yaml")
    assert data.startswith(b"%PDF-")
    for text in extractions(data, tmp_path):
        assert "Developing Self-Compassion" in text
        assert "Calm Place Imagery" in text
        assert "Ada & Co <calm>" in text  # escaped for reportlab, printed as written
        assert "en-GB" in text
        assert f"duration {format_clock(tl.duration_s)}" in text
        assert "Guided imagery to build a place that feels calm and welcoming." in text
        assert "Read slowly, in a warm voice." in text
        # every heading with its start in the track, from the timeline
        titles = ["Settling in", "Your favourite place", "Part 3"]
        assert [s.index for s in tl.sections] == [0, 1, 2]
        for title, span in zip(titles, tl.sections):
            assert f"{title} · {format_clock(span.start / tl.sr)}" in text
        assert "Settling in · 0:00" in text
        # the cues, in the words of format_seconds_spoken
        assert "Find a position where you can be comfortable. (pause, 3 seconds) Let your eyes close" in text
        # a section's last pause and its pause_after add up to one cue (10 + 5 s; 2 + the 1.5 s
        # paragraph pause that is pause_after's default), as consecutive pauses do in a text
        assert "Notice the colour of the light behind your eyelids. (pause, 15 seconds)" in text
        assert "(pause, 10 seconds)" not in text and "(pause, 5 seconds)" not in text
        assert "(pause, 1 minute 30 seconds)" in text
        assert "What can you hear? (pause, 3.5 seconds)" in text
        assert "(pause, 20 seconds)" in text
        assert "References" in text
        assert "Compassion Focused Therapy: Distinctive Features. Routledge." in text
        assert "British Journal of Clinical Psychology, 53(1), 6-41." in text
        assert "generated by calmplace from scripts/calm-place.yaml" in text
    # headings come in order, and the references after the last section
    text = pdf_text(data)
    positions = [text.index(t) for t in ("Settling in ·", "Your favourite place ·", "Part 3 ·", "References")]
    assert positions == sorted(positions)


def test_script_pdf_section_times_follow_the_timeline(script):
    p, _, _ = make(script, "en-GB")
    # long takes push the later sections past the minute: the heading must follow the timeline
    tl = build_timeline(p, [40 * SR] * len(p.takes), sr=SR)
    text = pdf_text(script_pdf(p, tl))
    starts = [format_clock(s.start / SR) for s in tl.sections]
    assert starts[1] != "0:00" and starts[2] > starts[1]
    assert f"Your favourite place · {starts[1]}" in text
    assert f"Part 3 · {starts[2]}" in text


def test_script_pdf_new_paragraph_at_a_blank_line(script):
    p, tl, _ = make(script, "en-GB")
    lines = [flat(line) for page in pdf_pages(script_pdf(p, tl)) for line in page.splitlines()]
    # the short first paragraph would have room for "Notice ..." on its last line: a line starting
    # with it, right after "... the floor.", is a paragraph break
    i = next(i for i, line in enumerate(lines) if line.startswith("Notice the colour of the light"))
    assert lines[i - 1].endswith("softly on the floor.")
    i = next(i for i, line in enumerate(lines) if line.startswith("What can you hear?"))
    assert lines[i - 1].endswith("What can you see?")


def test_script_pdf_uses_the_locale_spelling(script, tmp_path):
    gb, us = (script_pdf(*make(script, loc)[:2]) for loc in ("en-GB", "en-US"))
    for text in extractions(gb, tmp_path):
        assert "Notice the colour of the light" in text and "color" not in text
        assert "Your favourite place" in text
    for text in extractions(us, tmp_path):
        assert "Notice the color of the light" in text and "colour" not in text
        assert "Your favorite place" in text and "favourite" not in text
        assert "en-US" in text


def test_script_pdf_footer_numbers_every_page(script):
    p, tl, _ = make(script, "en-GB")
    pages = pdf_pages(script_pdf(p, tl))
    for n, page in enumerate(pages, start=1):
        assert f"Calm Place Imagery — page {n} of {len(pages)}" in flat(page)


def test_script_pdf_metadata_and_embedded_fonts(script):
    p, tl, _ = make(script, "en-GB")
    reader = pypdf.PdfReader(io.BytesIO(script_pdf(p, tl)))
    assert reader.metadata.title == "Calm Place Imagery"
    assert reader.metadata.author == "Ada & Co <calm>"
    assert reader.metadata.subject.startswith("Guided imagery to build a place")
    fonts = {}
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            fonts[font["/BaseFont"]] = font
    assert fonts
    for name, font in fonts.items():
        assert "DejaVuSans" in name, name  # only the bundled family, never a system or standard-14 font
        assert "/FontFile2" in font["/FontDescriptor"], f"{name} is not embedded"


def test_script_pdf_is_byte_identical_when_rebuilt(script):
    p, tl, _ = make(script, "en-GB")
    assert script_pdf(p, tl, script_path="a.yaml") == script_pdf(p, tl, script_path="a.yaml")
    p2, tl2, _ = make(script, "en-GB")  # fresh, equal inputs
    assert script_pdf(p2, tl2, script_path="a.yaml") == script_pdf(p, tl, script_path="a.yaml")


def test_script_pdf_names_the_script_file_without_its_absolute_folder(script):
    p, tl, _ = make(script, "en-GB")
    text = pdf_text(script_pdf(p, tl, script_path="/home/someone/project/scripts/calm-place.yaml"))
    assert "generated by calmplace from calm-place.yaml" in text and "/home/someone" not in text


def test_script_pdf_without_optional_fields(tmp_path):
    path = tmp_path / "bare.yaml"
    path.write_text("title: Bare\nlocales: [en-GB]\nsections:\n  - text: Just breathe.\n", encoding="utf-8")
    p, tl, _ = make(load_script(path), "en-GB")
    text = pdf_text(script_pdf(p, tl))
    assert "Bare" in text and "Part 1 · 0:00" in text and "Just breathe." in text
    assert "References" not in text


def test_a_paragraph_longer_than_a_page_starts_under_its_heading(tmp_path):
    """QA: a section of one paragraph longer than a page printed its heading alone on page 1 and
    the text from page 2 (the heading was kept with the whole paragraph, and the paragraph with
    its pause cue). Now the text starts under its heading and runs on, its cue after its end; a
    heading near a page's foot with a long paragraph after it starts the next page."""
    words = " ".join(["Rest and notice the slow warm breath."] * 110)
    path = tmp_path / "long.yaml"
    path.write_text("title: Long\nlocales: [en-GB]\nsections:\n  - title: Short one\n"
                    f"    text: {' '.join(['Breathe in and out.'] * 150)}\n    pause_after: 4s\n"
                    f"  - title: The long one\n    text: {words}\n    pause_after: 5s\n"
                    f"  - title: After\n    text: Rest.\n", encoding="utf-8")
    p, tl, _ = make(load_script(path), "en-GB")
    pages = [flat(t) for t in pdf_pages(script_pdf(p, tl))]
    heading = next(i for i, t in enumerate(pages) if "The long one" in t)
    # the heading's page holds the start of its text: at least HEADING_LINES lines' worth of words
    after = pages[heading].split("The long one", 1)[1]
    assert "Rest and notice the slow warm breath. Rest and notice" in after, pages[heading][-300:]
    # every page but the last is filled: none ends on a heading alone (nothing of the text after it)
    for t in pages[:-1]:
        assert not t.rstrip().endswith(("The long one", "After")), t[-200:]
    # the cue follows the long paragraph's last words
    assert "breath. (pause, 5 seconds)" in " ".join(pages)


def test_script_pdf_bytes_ignore_reportlab_and_date_variables(tmp_path):
    """CI QA: SOURCE_DATE_EPOCH dated the PDF (other bytes than a laptop's), and reportlab's RL_*
    variables, read when it is imported, changed them too (RL_pageCompression=0: uncompressed).
    In fresh processes, as reportlab reads them at import."""
    import os
    import sys

    path = tmp_path / "env.yaml"
    path.write_text("title: Env\nlocales: [en-GB]\nsections:\n  - text: Just breathe. [pause 3s] Rest.\n")
    code = ("import hashlib, sys\nfrom calmplace.script import load_script\nfrom calmplace.takes import plan\n"
            "from calmplace.timeline import build_timeline\nfrom calmplace.pdf import script_pdf\n"
            "p = plan(load_script(sys.argv[1]), 'en-GB')\n"
            "tl = build_timeline(p, [44100 for _ in p.takes], sr=44100)\n"
            "print(hashlib.sha256(script_pdf(p, tl)).hexdigest())\n")
    plain = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH" and not k.startswith("RL_")}
    odd = {**plain, "SOURCE_DATE_EPOCH": "1000000000", "RL_pageCompression": "0", "RL_useA85": "1"}
    digests = [subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True,
                              check=True).stdout.strip() for env in (plain, odd)]
    assert len(digests[0]) == 64 and digests[0] == digests[1]


def test_script_pdf_prints_text_beyond_latin_1(tmp_path):
    """Polish, Hungarian, Greek and Cyrillic print as themselves: reportlab's bundled Vera covers
    Latin-1 only, and printed these as empty boxes (pdftotext read 'Ł' as nothing)."""
    path = tmp_path / "wide.yaml"
    path.write_text("title: Ωραία θέα, Привет\nauthor: Łukasz Źdźbło, Ágnes Nagy-Kőszegi\nlocales: [en-GB]\n"
                    "sections:\n  - title: Čas a místo\n    text: Breathe, Zoë. Ѣ is old Cyrillic.\n", encoding="utf-8")
    p, tl, _ = make(load_script(path), "en-GB")
    data = script_pdf(p, tl)
    for text in extractions(data, tmp_path):
        for words in ("Ωραία θέα, Привет", "Łukasz Źdźbło, Ágnes Nagy-Kőszegi", "Čas a místo", "Breathe, Zoë."):
            assert words in text, words
    assert unprintable("Ωραία θέα Привет Łukasz Źdźbło Kőszegi Čas Zoë Ѣ — “quoted” · …") == []


def test_the_glyph_table_is_the_fonts():
    """pdf_glyphs keeps the code points every face of the embedded DejaVu Sans has, so `check`
    need not load the font; read the installed font files and compare (a matplotlib with another
    DejaVu fails here, and the message is the table to paste)."""
    from reportlab.pdfbase import pdfmetrics

    from calmplace.pdf import _FONT_FILES, _register_fonts

    _register_fonts()
    common = sorted(set.intersection(*(set(pdfmetrics.getFont(n).face.charToGlyph) for n in _FONT_FILES)))
    ranges: list[list[int]] = []
    for cp in common:
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    table = " ".join(f"{a:x}-{b:x}" if a != b else f"{a:x}" for a, b in ranges)
    assert _RANGES.split() == table.split(), table


def test_unprintable_names_what_the_pdf_cannot_show():
    # emoji and CJK: no glyph in DejaVu Sans; Hebrew and Arabic: glyphs, but reportlab sets them
    # left to right, so they would print reversed
    assert unprintable("Calm 🌈 place 漢字 🌈 שלום سلام.") == ["🌈", "漢", "字", "ש", "ל", "ו", "ם", "س", "ل", "ا", "م"]
    assert unprintable("plain\ttext\u00a0with spaces\u200b") == []
    assert describe_chars(["🌈"]) == "'🌈' (U+1F308 RAINBOW)"


# ------------------------------------------------------------------------------------------------
# The recording template and the takes CSV


def test_template_lists_every_take(script, tmp_path):
    p, _, expected = make(script, "en-GB")
    data = template_pdf(p, expected_s=expected, voice_name="ana", script_id=script.id)
    for text in extractions(data, tmp_path):
        assert "Calm Place Imagery" in text
        assert "room tone" in text and "silent" in text and "two seconds of silence" in text
        assert "voices/ana/calm-place/en-GB/<NNN>.wav" in text
        assert ".flac" in text and ".ogg" in text and ".mp3" in text
        for heading in ("Settling in", "Your favourite place", "Part 3"):
            assert heading in text
        for take, seconds in zip(p.takes, expected):
            assert f"Take {take.name}" in text
            assert f"{take.name}.wav · about {max(1, int(seconds + 0.5))} s" in text
            assert take.text in text
    text = pdf_text(data)
    # take 003 ("Notice the colour ...") follows a 1.5 s paragraph pause and is followed by [pause 10s]
    # and the section's 5 s pause_after
    third = text[text.index("Take 003"):]
    assert "pause before: 1.5 seconds · after: 15 seconds" in third[:400]
    first = text[text.index("Take 001"):]
    assert "pause before: 3 seconds · after: 3 seconds" in first[:400]  # lead_in, then [pause 3s]


def test_template_says_none_for_no_pause(tmp_path):
    path = tmp_path / "tight.yaml"
    path.write_text("title: Tight\nlocales: [en-GB]\nlead_in: 0s\ntail: 0s\nsections:\n"
                    "  - text: One breath.\n    pause_after: 0\n", encoding="utf-8")
    p = plan(load_script(path), "en-GB")
    text = flat(pdf_text(template_pdf(p, expected_s=[1.0], voice_name="v", script_id="tight")))
    assert "pause before: none · after: none" in text and "0 milliseconds" not in text


def test_template_never_splits_a_take_across_pages(tmp_path):
    # forty long takes fill several pages, so page breaks must fall between takes
    sentence = "Breathe in slowly and notice the air as it fills your chest, then let it go. "
    body = "\n\n".join(f"Take number {i}. " + sentence * (1 + i % 4) for i in range(40))
    path = tmp_path / "long-one.yaml"
    path.write_text("title: Long\nlocales: [en-GB]\nsections:\n  - title: Breathing\n    text: |\n"
                    + "".join(f"      {line}\n" for line in body.splitlines()), encoding="utf-8")
    p = plan(load_script(path), "en-GB")
    assert len(p.takes) == 40
    expected = [30.0] * len(p.takes)
    pages = [flat(t) for t in pdf_pages(template_pdf(p, expected_s=expected, voice_name="v", script_id="long-one"))]
    assert len(pages) >= 5
    for take in p.takes:
        assert any(f"Take {take.name}" in page and take.text in page and "about 30 s" in page
                   and "pause before:" in page[page.index(f"Take {take.name}"):] for page in pages), take.name
    assert "Breathing" in pages[1]  # the section heading opens the first page of takes


def test_template_is_byte_identical_and_checks_lengths(script):
    p, _, expected = make(script, "en-US")
    one = template_pdf(p, expected_s=expected, voice_name="ana", script_id=script.id)
    assert one == template_pdf(p, expected_s=expected, voice_name="ana", script_id=script.id)
    assert "Your favorite place" in pdf_text(one)
    with pytest.raises(ValueError):
        template_pdf(p, expected_s=expected[:-1], voice_name="ana", script_id=script.id)


def test_takes_csv_round_trips(script):
    p, _, expected = make(script, "en-US")
    text = takes_csv(p, expected_s=expected)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == "take,file,section,expected_s,pause_before_s,pause_after_s,text"
    assert len(rows) == len(p.takes)
    for row, take, seconds in zip(rows, p.takes, expected):
        assert row["take"] == take.name
        assert row["file"] == f"{take.name}.wav"
        assert row["text"] == take.text  # commas and quotes survive the csv quoting
        # 2 decimals for the expected length: a hundredth of a second is below anything audible
        assert float(row["expected_s"]) == pytest.approx(seconds, abs=0.005)
        assert float(row["pause_before_s"]) == pytest.approx(take.pause_before_s)
        assert float(row["pause_after_s"]) == pytest.approx(take.pause_after_s)
    assert [r["section"] for r in rows][0] == "Settling in"
    assert rows[-1]["section"] == "Part 3"
    assert any("color" in r["text"] for r in rows)
    with pytest.raises(ValueError):
        takes_csv(p, expected_s=expected + [1.0])


def test_checking_greek_and_cyrillic_does_not_load_the_font(tmp_path):
    """Every build validates its scripts, a no-op build included; a title in Greek made that load
    the font's four faces (0.3-0.5 s: a no-op build went from 0.4 to 0.7-0.9 s, QA)."""
    import subprocess
    import sys

    path = tmp_path / "greek.yaml"
    path.write_text("title: Ωραία θέα, Привет\nlocales: [en-GB]\nsections:\n  - text: Breathe.\n", encoding="utf-8")
    code = (f"import sys; from pathlib import Path; from calmplace.script import load_script; "
            f"load_script(Path({str(path)!r})); print('reportlab' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_zero_pause_prints_no_cue_and_keeps_the_paragraph(tmp_path):
    """[pause 0] ends a take without silence: the PDF reads on in the same paragraph, no cue; a
    zero pause beside a real one prints that one's cue alone."""
    path = tmp_path / "zero.yaml"
    path.write_text('title: Zero\nlocales: [en-GB]\nsections:\n'
                    '  - text: "Breathe in. [pause 0] Breathe out. [pause 0ms][pause 2s] Rest."\n', encoding="utf-8")
    p, tl, _ = make(load_script(path), "en-GB")
    text = flat(" ".join(pdf_pages(script_pdf(p, tl))))
    assert "Breathe in. Breathe out. (pause, 2 seconds) Rest." in text, text
    assert "0 seconds" not in text


def test_a_sections_closing_cue_never_starts_a_page(tmp_path):
    """QA: a section's closing cue could land alone at the top of a page. Twelve sections of
    growing length; with 26 words in the first, a cue fell at the top of page 3 before the fix."""
    sections = "".join(f"  - title: Part {i}\n    text: \"{' '.join(['word'] * (26 + i * 7))}. [pause 5s]\"\n"
                       for i in range(12))
    path = tmp_path / "lone.yaml"
    path.write_text(f"title: Lone\nlocales: [en-GB]\nsections:\n{sections}", encoding="utf-8")
    p, tl, _ = make(load_script(path), "en-GB")
    pages = pdf_pages(script_pdf(p, tl))
    assert len(pages) >= 3
    assert not [k for k, page in enumerate(pages) if page.strip().startswith("(pause")], pages


def test_long_titles_fit_the_footer_and_metadata_follow_the_script(tmp_path):
    """QA: a 117-character title ran the footer off both edges of the page; every PDF's keywords
    named compassion focused therapy, and its author was 'calmplace' when the script had none."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    from calmplace.pdf import FONT, MARGIN_X, PAGE, _fit

    title = "A very long title for a colour garden visualisation that goes on and on well past the width of any page"
    line = _fit(title, " — page 12 of 13", size=9, width=PAGE[0] - 2 * MARGIN_X)
    assert stringWidth(line, FONT, 9) <= PAGE[0] - 2 * MARGIN_X
    assert line.endswith("… — page 12 of 13") and line.startswith("A very long title")
    assert _fit("Short", " — page 1 of 1", size=9, width=400) == "Short — page 1 of 1"
    path = tmp_path / "long.yaml"
    path.write_text(f"title: {title}\ncollection: Breathing\nlocales: [en-GB]\nsections:\n  - text: Breathe.\n",
                    encoding="utf-8")
    p, tl, _ = make(load_script(path), "en-GB")
    reader = pypdf.PdfReader(io.BytesIO(script_pdf(p, tl)))
    assert "… — page 1 of 1" in reader.pages[0].extract_text()
    assert reader.metadata["/Keywords"] == "guided imagery, Breathing"
    assert not reader.metadata.get("/Author")
