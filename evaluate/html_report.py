"""The evaluate stage's human-readable outputs: one self-contained HTML page and a terminal table.

The page is a single file (inline CSS, inline SVG plots, images as data: URIs, no network
access at all) so an artist can open it anywhere, mail it or archive it next to the video,
and it still shows everything. A tiny inline script reports in ``document.title`` whether
every image decoded, so a headless browser can check the page without a screenshot.
"""
from __future__ import annotations

import base64
import html
import math
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.core.files import write_atomic

IDENTITY_THRESHOLD = 0.6  # dlib's same-person distance

# (report key, label, what it measures, which end report.json calls "worst")
METRICS: list[tuple[str, str, str, str]] = [
    ("identity_to_src", "Identity \u2192 source",
     "distance of the output face to the source person; below 0.6 = recognised as them "
     "(lower is better)", "max"),
    ("identity_to_dst", "Identity \u2192 original",
     "distance of the output face to the person in the reference; 0.6 or more = no longer "
     "them (higher means the identity changed)", "max"),
    ("expression", "Expression",
     "mean landmark offset from the reference face, in eye distances (lower is better)", "max"),
    ("pose", "Pose",
     "yaw/pitch/roll difference from the reference face, in degrees (lower is better)", "max"),
    ("ssim", "SSIM",
     "structural similarity to the reference inside the face (1 = identical; worst = lowest)",
     "min"),
    ("identity_held_apart.to_src", "FaceNet \u2192 source",
     "held-apart network (never used in training): distance to the source person; below 0.92 = "
     "recognised as them", "max"),
    ("identity_held_apart.to_dst", "FaceNet \u2192 original",
     "held-apart network: distance to the person in the reference; 0.92 or more = no longer them", "min"),
    ("sharpness", "Sharpness",
     "fine detail inside the face, output over reference (1 = as sharp; below 0.85 looks soft)", "min"),
    ("fringing", "Colour fringes",
     "green/blue/purple colour inside the face, output over reference (1 = none added; above 1.2 shows)",
     "max"),
    ("tone_delta_e", "Skin tone \u0394E",
     "mean skin colour of output against reference (CIE76; above 3 the face looks paler or darker "
     "than the neck)", "max"),
]
#: Values that get the warning colour: (key, too high?, limit).
LIMITS: dict[str, tuple[bool, float]] = {
    "identity_to_src": (True, 0.6), "identity_to_dst": (False, 0.6),
    "identity_held_apart.to_src": (True, 0.92), "identity_held_apart.to_dst": (False, 0.92),
    "sharpness": (False, 0.85), "fringing": (True, 1.2), "tone_delta_e": (True, 3.0),
}
PAIRED: list[tuple[str, str, str]] = [
    ("jitter", "Jitter",
     "landmark shake from frame to frame, in eye distances (RMS); should stay near the reference"),
    ("seam_delta_e", "Seam \u0394E",
     "colour step across the face border (CIE76 \u0394E); should stay near the reference"),
]

SERIES_STYLE: dict[str, tuple[str, str]] = {  # key -> (legend label, colour)
    "identity_to_src": ("to source", "#1f6fd1"),
    "identity_to_dst": ("to original (reference)", "#e07b00"),
    "held_apart_to_src": ("to source", "#1f6fd1"),
    "held_apart_to_dst": ("to original (reference)", "#e07b00"),
    "realism_sharpness": ("sharpness (output / reference)", "#2a9d8f"),
    "realism_fringing": ("colour fringes (output / reference)", "#8e44ad"),
    "eyes_reference": ("original", "#6c757d"),
    "eyes_output": ("output", "#d62839"),
    "jitter_output": ("output", "#d62839"),
    "jitter_reference": ("reference", "#6c757d"),
}
EXTRA_COLOURS = ["#2a9d8f", "#8e44ad", "#b5838d", "#556b2f"]


# ---------------------------------------------------------------- number formatting

def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def fmt(v: Any) -> str:
    """A value as an artist reads it: '-' when missing, 3 significant digits below 1."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if not _finite(v):
        return "-"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 1e-4:
        return f"{v:.{2 - math.floor(math.log10(a))}f}"
    return f"{v:.2e}"


def _ratio(out: Any, ref: Any) -> str:
    """Output relative to reference ('x1.32', ASCII for any terminal), '-' when not computable."""
    if not (_finite(out) and _finite(ref)) or ref == 0:
        return "-"
    return f"x{out / ref:.2f}"


def _get(d: Any, key: str) -> Any:
    return d.get(key) if isinstance(d, dict) else None


def _lookup(report: dict, key: str) -> Any:
    """A summary by its key, ``a.b`` for one nested in another."""
    value: Any = report
    for part in key.split("."):
        value = _get(value, part)
    return value


# ---------------------------------------------------------------- terminal table

def format_table(report: dict) -> str:
    """The summary as plain text for the terminal, so a run ends with the figures on screen.

    One line per metric (mean / median / worst / count), jitter and seam as output vs
    reference, then coverage, fps, duration, audio and the notes; '-' marks a value that
    could not be measured. Every line is shorter than 100 characters.
    """
    lines = [f"{'metric':<18}{'mean':>10}{'median':>10}{'worst':>10}{'count':>8}"]
    for key, _, _, worst in METRICS:
        s = _lookup(report, key) or {}
        note = "  (worst = lowest)" if worst == "min" else ""
        name = key.replace("identity_held_apart.", "held_apart_")
        lines.append(f"{name:<18}{fmt(_get(s, 'mean')):>10}{fmt(_get(s, 'median')):>10}"
                     f"{fmt(_get(s, 'worst')):>10}{fmt(_get(s, 'count') or 0):>8}{note}")
    lines.append("")
    lines.append(f"{'':<18}{'output':>10}{'reference':>11}{'ratio':>8}")
    for key, _, _ in PAIRED:
        p = report.get(key) or {}
        out, ref = _get(p, "output"), _get(p, "reference")
        lines.append(f"{key:<18}{fmt(out):>10}{fmt(ref):>11}{_ratio(out, ref):>8}")
    held = report.get("identity_held_apart") or {}
    trained = report.get("identity_trained_against") or {}
    lines.append("")
    lines.append(f"frames closer to src than to the original: dlib (trained against) "
                 f"{_share(_get(trained, 'share_closer_to_src'))}, FaceNet (held apart) "
                 f"{_share(_get(held, 'share_closer_to_src'))}")
    for line in _agreement_lines(report):
        lines.append(line)
    c = report.get("coverage") or {}
    g = lambda k: fmt(_get(c, k))  # noqa: E731
    lines.append("")
    lines.append(f"coverage: frames in {g('frames_in')}, out {g('frames_out')}, "
                 f"compared {g('frames_compared')}, swapped {g('frames_swapped')}")
    lines.append(f"          passed through {g('frames_passed_through')}, "
                 f"face missing in output {g('frames_face_missing_in_output')}")
    lines.append(f"fps:      in {g('fps_in')}, out {g('fps_out')}    "
                 f"duration: in {g('duration_in')} s, out {g('duration_out')} s")
    lines.append(f"audio:    in {g('audio_in')}, out {g('audio_out')}")
    lines.extend(_provenance_line(report))
    notes = [str(n) for n in (report.get("notes") or [])]
    if notes:
        lines.append("")
        lines.append("notes:")
        for n in notes:
            lines.extend(textwrap.wrap(n, width=95, initial_indent="  ! ",
                                       subsequent_indent="    ") or ["  !"])
    return "\n".join(lines)


def _provenance_line(report: dict) -> list[str]:
    """What says the output is a face swap: its content credentials and the watermark (the page's Provenance)."""
    prov = report.get("provenance")
    if not prov:
        return []
    creds = prov.get("credentials") or {}
    manifest = ("none" if not creds.get("found") else
                ("valid" + (", trusted" if creds.get("trusted") else "")) if creds.get("valid") else "INVALID")
    if prov.get("watermark_key_id") is None:
        mark = "not looked for (no watermark key on this machine)"
    else:
        payload = prov.get("watermark_payload")
        window = prov.get("watermark_window")
        mark = (f"{prov.get('watermark_frames_marked')} of {prov.get('watermark_frames')} frames with a face"
                + (f" (over {window}-frame windows, as verify judges)" if window else "")
                + f", key {prov['watermark_key_id']}, payload {payload or 'not read'}")
    return [f"provenance: content credentials {manifest}; watermark {mark}"]


# ---------------------------------------------------------------- SVG plots

def _region_line(report: dict) -> list[str]:
    """Each face region's colour distance from the src person: output, and the original in brackets."""
    r = report.get("regions") or {}
    parts = [f"{name} {fmt(_get(v, 'output'))} ({fmt(_get(v, 'original'))})" for name, v in r.items()
             if _get(v, "frames")]
    skin = [f"{name} {fmt(_get(v, 'output_vs_skin'))} ({fmt(_get(v, 'original_vs_skin'))})" for name, v in r.items()
            if _get(v, "frames") and _get(v, "output_vs_skin") is not None]
    lines = ["", "regions, delta E from the src person's own (original in brackets):", "  " + ", ".join(parts)] \
        if parts else []
    if skin:
        lines += ["regions against the face's own skin (part minus cheeks, against the src person's; original in "
                  "brackets):", "  " + ", ".join(skin)]
    return lines


def _texture_line(report: dict) -> list[str]:
    """Skin texture of output and original against the src person's own range."""
    t = report.get("texture") or {}
    if not _get(t, "frames"):
        return []
    bounds = _get(t, "src_range")
    frames, below, above = _get(t, "frames"), _get(t, "below") or 0, _get(t, "above") or 0
    where = (f"src person's range {fmt(bounds[0])}-{fmt(bounds[1])}; output inside it on "
             f"{frames - below - above} of {frames} frames ({below} below = soft or airbrushed, "
             f"{above} above = over-sharpened or speckled)" if bounds else "src person's range not measured")
    return ["", f"texture: output {fmt(_get(t, 'output'))} (original {fmt(_get(t, 'original'))}); {where}"]


#: Above this change of the face's tone against the neck (delta E), the face reads as a mask
SURROUND_LIMIT = 3.0


def _surround_lines(report: dict) -> list[str]:
    """The face's tone against the neck and the skin beside it: how much the swap changed it."""
    t = report.get("surround_tone") or {}
    parts = []
    for name, v in t.items():
        if not _get(v, "frames"):
            parts.append(f"{name} not measured (no skin found next to the face)")
            continue
        c = _get(v, "change") or {}
        parts.append(f"{name}: change {fmt(_get(c, 'median'))} (worst {fmt(_get(c, 'worst'))}), face to {name} "
                     f"{fmt(_get(v, 'output'))} (original {fmt(_get(v, 'original'))}), {_get(v, 'frames')} frames")
    return ["", "face against the skin around it, delta E (medians):"] + ["  " + p for p in parts] if parts else []


def _people_line(report: dict) -> list[str]:
    """Whom the figures are about, when the dst video shows several people."""
    p = report.get("people") or {}
    if not isinstance(_get(p, "measured"), list):
        return []
    listed = "; ".join(f"person {q['person']}: changed in {q['swapped']} of {q['matched']} frames"
                       + (" (measured)" if q.get("measured") else "") for q in p.get("people") or [])
    head = f"people: {_get(p, 'count')} in the dst video; measured {_whom(p)} ({_get(p, 'chosen_by')})"
    return [""] + textwrap.wrap(head, width=95, subsequent_indent="  ") + textwrap.wrap(
        listed, width=95, initial_indent="  ", subsequent_indent="  ")


def _agreement_lines(report: dict) -> list[str]:
    """Blinks and mouth movement: does the output open and close where the original does?"""
    lines = _people_line(report) + _region_line(report) + _texture_line(report) + _surround_lines(report)
    started = False
    for key, closed, opened in (("eyes", "eyes closed", "open"), ("mouth", "mouth closed", "open")):
        a = report.get(key) or {}
        if not _get(a, "frames"):
            continue
        if not started:
            lines.append("")
            started = True
        lines.append(f"{key + ':':<7}correlation with the original {fmt(_get(a, 'correlation'))}, mean |difference| "
                     f"{fmt(_get(a, 'mean_abs_difference'))}")
        lines.append(f"{'':<7}{closed} in the original, {opened} in the output: "
                     f"{_get(a, 'closed_in_original_open_in_result')} of {_get(a, 'closed_in_original')} frames "
                     f"(the reverse: {_get(a, 'open_in_original_closed_in_result')})")
    return lines


def _regions_html(report: dict) -> str:
    """A card: each face region's colour distance from the src person, output over original."""
    regions = [(name, v) for name, v in (report.get("regions") or {}).items() if _get(v, "frames")]
    if not regions:
        return ""
    heads = "".join(f"<th>{_e(name)}</th>" for name, _ in regions)
    out = "".join(f'<td class="num{" warn" if _finite(_get(v, "output")) and _get(v, "output") > 4 else ""}">'
                  f'{_e(fmt(_get(v, "output")))}</td>' for _, v in regions)
    orig = "".join(f'<td class="num">{_e(fmt(_get(v, "original")))}</td>' for _, v in regions)

    def against_skin(key: str, warn: bool) -> str:
        cells = []
        for _, v in regions:
            value = _get(v, key)
            flag = " warn" if warn and _finite(value) and value > 4 else ""
            cells.append(f'<td class="num{flag}">{_e(fmt(value)) if value is not None else "-"}</td>')
        return "".join(cells)
    skin_rows = ""
    if any(_get(v, "output_vs_skin") is not None for _, v in regions):
        skin_rows = (f'<tr><td class="l">output, against its skin</td>{against_skin("output_vs_skin", True)}</tr>'
                     f'<tr><td class="l">original, against its skin</td>'
                     f'{against_skin("original_vs_skin", False)}</tr>')
    return (f'<div class="card"><table class="t"><tr><th class="l">colour, \u0394E from the src person</th>{heads}'
            f'</tr><tr><td class="l">output</td>{out}</tr><tr><td class="l">original</td>{orig}</tr>{skin_rows}'
            f'</table><p class="hint">CIE76 distance of each region\'s mean colour from the same region of the src '
            f'person\'s own faces (median over frames); above 4 the eye sees another colour. Lighting differs '
            f'between the two shots, so the original shows where the swap started. "Against its skin" compares '
            f'each part\'s colour minus the cheeks\' with the same difference in the src person\'s faces, so the '
            f'shot\'s light mostly cancels: white brows on dark skin or a nose redder than the cheeks show there.'
            f'</p></div>')


def _texture_html(report: dict) -> str:
    """A card: the skin's fine-to-middle detail ratio of output and original against the src person's range."""
    t = report.get("texture") or {}
    if not _get(t, "frames"):
        return ""
    bounds = _get(t, "src_range")
    inside = _get(t, "inside_src_range")
    rng = f"{fmt(bounds[0])} \u2013 {fmt(bounds[1])}" if bounds else "-"
    warn = " warn" if _finite(inside) and inside < 0.5 else ""
    return (f'<div class="card"><table class="t"><tr><th class="l">skin texture</th><th>output</th><th>original</th>'
            f'<th>src person\'s range</th><th>output inside</th><th>below</th><th>above</th></tr>'
            f'<tr><td class="l">fine / middle detail</td><td class="num">{_e(fmt(_get(t, "output")))}</td>'
            f'<td class="num">{_e(fmt(_get(t, "original")))}</td><td class="num">{_e(rng)}</td>'
            f'<td class="num{warn}">{_e(_share(inside))}</td><td class="num">{_e(str(_get(t, "below")))}</td>'
            f'<td class="num">{_e(str(_get(t, "above")))}</td></tr></table>'
            f'<p class="hint">Ratio of fine to middle-scale luminance detail on the skin, every face brought to one '
            f'scale. Below the src person\'s own range (5th-95th percentile of their faces): soft, airbrushed or '
            f'plastic skin. Above it: sharpening halos or painted speckle.</p></div>')


def _surround_html(report: dict) -> str:
    """A card: the face's tone against the neck and the skin beside it, output against original."""
    t = report.get("surround_tone") or {}
    if not any(_get(v, "frames") for v in t.values()):
        return ""
    rows = []
    for name, v in t.items():
        c = _get(v, "change") or {}
        median = _get(c, "median")
        warn = " warn" if _finite(median) and median > SURROUND_LIMIT else ""
        rows.append(f'<tr><td class="l">{_e(name)}</td><td class="num{warn}">{_e(fmt(median))}</td>'
                    f'<td class="num">{_e(fmt(_get(c, "worst")))}</td><td class="num">{_e(fmt(_get(v, "output")))}</td>'
                    f'<td class="num">{_e(fmt(_get(v, "original")))}</td><td class="num">{_e(str(_get(v, "frames")))}'
                    f'</td></tr>')
    return ('<div class="card"><table class="t"><tr><th class="l">face against the skin around it</th>'
            '<th>change</th><th>worst change</th><th>face to it, output</th><th>original</th><th>frames</th></tr>'
            + "".join(rows) + '</table><p class="hint">CIELAB colour of the cheeks against the skin just below the '
            'jaw (neck) and beside the face (ears, temples), medians, in the same frame. <b>change</b>: how far the '
            'swap moved that relation from the original frame\'s (CIE76 \u0394E; 0 for an untouched or wholly '
            'regraded frame; above 3 the face reads paler, darker or another hue than its neck). The original '
            'relation is the yardstick: a neck in shadow reads some \u0394E from the face there too.</p></div>')


def _people_html(report: dict) -> str:
    """A card: the dst video's people, whom the figures are about, and whose faces the output changed."""
    p = report.get("people") or {}
    if not isinstance(_get(p, "measured"), list):
        return ""
    rows = "".join(
        f'<tr><td class="l">person {_e(q["person"])}{" (measured)" if q.get("measured") else ""}</td>'
        f'<td class="num">{_e(q["faces"])}</td><td class="num">{_e(q["first_frame"])}-{_e(q["last_frame"])}</td>'
        f'<td class="num">{_e(q["matched"])}</td>'
        f'<td class="num{" warn" if q["swapped"] and not q.get("measured") else ""}">{_e(q["swapped"])}</td></tr>'
        for q in p.get("people") or [])
    return ('<div class="card"><table class="t"><tr><th class="l">people</th><th>faces</th><th>frames</th>'
            '<th>matched</th><th>changed</th></tr>' + rows + '</table>'
            f'<p class="hint">The figures above are of {_e(_whom(p))} ({_e(_get(p, "chosen_by"))}). Changed: frames '
            'whose face the output changed; anyone else\'s should read 0.</p></div>')


def _whom(people: dict) -> str:
    """'person 2 only' or 'all 3 people': whom the figures are about."""
    measured = people["measured"]
    if len(measured) > 1 and len(measured) == _get(people, "count"):
        return f"all {len(measured)} people"
    return f"person {', '.join(str(n) for n in measured)} only"


def _agreement_html(report: dict) -> str:
    rows = []
    for key, label, hint in (
            ("eyes", "Eyes (blinks)", "eye openness of the output against the original over time: correlation "
                                      "(1 = blinks where the original blinks); a blink lost is a frame whose "
                                      "original has closed eyes and whose output has them open"),
            ("mouth", "Mouth", "inner-lip gap against the original: correlation, and frames whose original has "
                               "the mouth closed but the output open")):
        a = report.get(key) or {}
        if not _get(a, "frames"):
            continue
        corr = _get(a, "correlation")
        lost = _get(a, "closed_in_original_open_in_result") or 0
        weak = _finite(corr) and corr < (0.8 if key == "eyes" else 0.9)     # issue 26's bars
        rows.append(f'<tr><td class="l">{_e(label)}</td><td class="num{" warn" if weak else ""}">{_e(fmt(corr))}'
                    f'</td><td class="num">{_e(fmt(_get(a, "mean_abs_difference")))}</td>'
                    f'<td class="num{" warn" if lost > 1 else ""}">{lost} of {_get(a, "closed_in_original")}</td>'
                    f'<td class="num">{_get(a, "open_in_original_closed_in_result")}</td>'
                    f'<td class="hint">{_e(hint)}</td></tr>')
    if not rows:
        return ""
    return ('<div class="card"><table class="t"><tr><th class="l"></th><th>correlation</th><th>mean |diff|</th>'
            '<th>closed &rarr; open</th><th>open &rarr; closed</th><th class="l">what it means</th></tr>'
            + "".join(rows) + "</table></div>")


def _nice_step(span: float, target: int = 5) -> float:
    """A 1/2/5 x 10^k step giving about ``target`` ticks over ``span``."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _tick_label(v: float, step: float) -> str:
    if abs(v) < step * 1e-9:
        return "0"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if step >= 1 and float(step).is_integer():
        decimals = 0
    return f"{v:.{decimals}f}"


def _runs(values: list[Any]) -> list[list[tuple[int, float]]]:
    """Consecutive measured (finite) values, so a missing frame breaks the line."""
    runs: list[list[tuple[int, float]]] = []
    cur: list[tuple[int, float]] = []
    for i, v in enumerate(values):
        if _finite(v):
            cur.append((i, float(v)))
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    return runs


def _svg_plot(title: str, y_label: str, lines: list[tuple[str, str, list[Any]]],
              threshold: tuple[float, str] | None = None) -> str:
    """One line plot as inline SVG: axes, ticks, labels, legend, gaps at missing values.

    ``lines`` holds (legend label, colour, per-frame values indexed by frame number).
    """
    w, h = 960, 250
    ml, mr, mt, mb = 72, 18, 34, 44
    pw, ph = w - ml - mr, h - mt - mb
    n = max((len(v) for _, _, v in lines), default=0)
    ys = [float(v) for _, _, vals in lines for v in vals if _finite(v)]
    if threshold is not None:
        ys.append(threshold[0])
    y_lo = min([0.0] + ys)
    y_hi = max(ys) if ys else 1.0
    if y_hi <= y_lo:
        y_hi = y_lo + 1.0
    ystep = _nice_step(y_hi - y_lo)
    y_lo = math.floor(y_lo / ystep + 1e-9) * ystep
    y_hi = math.ceil(y_hi * 1.04 / ystep - 1e-9) * ystep
    x_hi = max(n - 1, 1)
    xstep = max(1, int(_nice_step(x_hi, 8)))

    def sx(i: float) -> float:
        return ml + pw * i / x_hi

    def sy(v: float) -> float:
        return mt + ph * (1 - (v - y_lo) / (y_hi - y_lo))

    e = html.escape
    out = [f'<svg class="plot" viewBox="0 0 {w} {h}" width="100%" role="img" '
           f'aria-label="{e(title)}" '
           'font-family="system-ui, sans-serif" font-size="12">']
    out.append(f'<text x="{ml}" y="16" font-size="14" font-weight="600" fill="#222">{e(title)}</text>')
    # grid and y ticks
    k = 0
    while True:
        v = y_lo + k * ystep
        if v > y_hi + ystep * 1e-6:
            break
        y = sy(v)
        out.append(f'<line x1="{ml}" y1="{y:.1f}" x2="{ml + pw}" y2="{y:.1f}" stroke="#e6e6e6"/>')
        out.append(f'<text x="{ml - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">'
                   f'{_tick_label(v, ystep)}</text>')
        k += 1
    # x ticks
    for i in range(0, x_hi + 1, xstep):
        x = sx(i)
        out.append(f'<line x1="{x:.1f}" y1="{mt + ph}" x2="{x:.1f}" y2="{mt + ph + 5}" stroke="#555"/>')
        out.append(f'<text x="{x:.1f}" y="{mt + ph + 18}" text-anchor="middle" fill="#555">{i}</text>')
    # axes
    out.append(f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{mt + ph}" stroke="#555"/>')
    out.append(f'<line x1="{ml}" y1="{mt + ph}" x2="{ml + pw}" y2="{mt + ph}" stroke="#555"/>')
    out.append(f'<text x="{ml + pw / 2}" y="{h - 6}" text-anchor="middle" fill="#333">frame</text>')
    out.append(f'<text transform="translate(16 {mt + ph / 2}) rotate(-90)" text-anchor="middle" '
               f'fill="#333">{e(y_label)}</text>')
    legend: list[tuple[str, str, str]] = []  # (label, colour, dash)
    if threshold is not None:
        y = sy(threshold[0])
        out.append(f'<line x1="{ml}" y1="{y:.1f}" x2="{ml + pw}" y2="{y:.1f}" stroke="#2b2b2b" '
                   'stroke-width="1.2" stroke-dasharray="6 4"/>')
        legend.append((threshold[1], "#2b2b2b", "6 4"))
    for label, colour, vals in lines:
        legend.append((label, colour, ""))
        for run in _runs(vals):
            if len(run) == 1:
                i, v = run[0]
                out.append(f'<circle cx="{sx(i):.1f}" cy="{sy(v):.1f}" r="2" fill="{colour}"/>')
            else:
                pts = " ".join(f"{sx(i):.1f},{sy(v):.1f}" for i, v in run)
                out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" '
                           'stroke-width="1.6" stroke-linejoin="round"/>')
    if not any(_runs(v) for _, _, v in lines):
        out.append(f'<text x="{ml + pw / 2}" y="{mt + ph / 2}" text-anchor="middle" fill="#999" '
                   'font-size="14">no values measured</text>')
    # legend, right-aligned above the plot; width estimated from the label length
    x = ml + pw
    for label, colour, dash in reversed(legend):
        tw = 7 * len(label)
        x -= tw + 34
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<line x1="{x:.0f}" y1="12" x2="{x + 24:.0f}" y2="12" stroke="{colour}" '
                   f'stroke-width="2"{dash_attr}/>')
        out.append(f'<text x="{x + 28:.0f}" y="16" fill="#333">{e(label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _plot_lines(series: dict[str, list[Any]], prefix: str) -> list[tuple[str, str, list[Any]]]:
    """The series whose key starts with ``prefix``: known ones first, in a fixed order."""
    keys = [k for k in SERIES_STYLE if k.startswith(prefix) and k in series]
    keys += sorted(k for k in series if k.startswith(prefix) and k not in SERIES_STYLE)
    out = []
    for j, k in enumerate(keys):
        label, colour = SERIES_STYLE.get(k, (k.replace("_", " "), EXTRA_COLOURS[j % len(EXTRA_COLOURS)]))
        out.append((label, colour, list(series[k] or [])))
    return out


# ---------------------------------------------------------------- HTML

CSS = """
* { box-sizing: border-box; }
body { margin: 0; padding: 20px 28px 40px; background: #f5f6f8; color: #1d1f23;
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
h1 { font-size: 22px; margin: 0 0 6px; }
h2 { font-size: 16px; margin: 26px 0 8px; }
.paths { border-collapse: collapse; margin-bottom: 10px; }
.paths th { text-align: left; color: #666; font-weight: 500; padding: 1px 12px 1px 0; vertical-align: top; }
.paths td { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12.5px;
            word-break: break-all; }
.notes { background: #fff4d6; border: 1px solid #e8c55a; border-left: 5px solid #e0a800;
         border-radius: 6px; padding: 10px 16px; margin: 12px 0; }
.notes strong { display: block; margin-bottom: 4px; }
.notes ul { margin: 0; padding-left: 20px; }
.cards { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.card { background: #fff; border: 1px solid #dde0e5; border-radius: 8px; padding: 10px 14px; }
table.t { border-collapse: collapse; }
table.t th, table.t td { padding: 4px 10px; border-bottom: 1px solid #eceef1; text-align: right; }
table.t th { font-weight: 600; color: #444; background: #fafbfc; }
table.t td.l, table.t th.l { text-align: left; }
table.t td.hint { text-align: left; color: #666; font-size: 12.5px; max-width: 440px; }
table.t td.num { font-variant-numeric: tabular-nums; font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
td.warn, p.warn { background: #fde2e1; color: #9b1c1c; font-weight: 600; }
.plot { display: block; background: #fff; border: 1px solid #dde0e5; border-radius: 8px;
        margin-bottom: 12px; max-width: 1100px; }
.strip { display: flex; flex-wrap: wrap; gap: 14px; }
.sample { background: #fff; border: 1px solid #dde0e5; border-radius: 8px; padding: 8px;
          width: 540px; max-width: 100%; }
.sample .head { display: flex; justify-content: space-between; gap: 8px; margin: 0 2px 6px; }
.sample .why { background: #e8eefc; color: #1f4fa8; border-radius: 10px; padding: 0 8px;
               font-size: 12px; white-space: nowrap; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 6px; }
.pair figure { margin: 0; }
.pair img, .pair .missing { display: block; width: 100%; height: auto; border-radius: 4px;
                            background: #222; }
.pair .missing { aspect-ratio: 1 / 1; color: #bbb; display: flex; align-items: center;
                 justify-content: center; }
.pair figcaption { text-align: center; font-size: 12px; color: #666; }
.caption { margin: 6px 2px 0; font-size: 12.5px; color: #333; }
.muted { color: #777; }
"""

# Reports in the page title whether every image decoded (read by the headless-browser test).
SELF_CHECK_JS = """
(function () {
  var failed = false;
  window.onerror = function (message) {
    failed = true;
    document.title = "report-error " + message;
  };
  window.addEventListener("load", function () {
    if (failed) { return; }
    var imgs = document.getElementsByTagName("img");
    var n = imgs.length, k = 0;
    for (var i = 0; i < n; i++) {
      if (imgs[i].complete && imgs[i].naturalWidth > 0) { k++; }
    }
    document.title = (k === n) ? "report-ok images=" + n : "report-broken loaded=" + k + " of " + n;
  });
})();
"""

# The page may load nothing from anywhere: only inline style/script and data: images.
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
       "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'")


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _data_uri(data: bytes) -> str:
    mime = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _share(v: Any) -> str:
    return f"{v:.0%}" if _finite(v) else "-"


def _metric_rows(report: dict) -> Iterable[str]:
    for key, label, hint, _ in METRICS:
        s = _lookup(report, key) or {}
        cells = []
        for field in ("mean", "median", "worst"):
            v = _get(s, field)
            high, limit = LIMITS.get(key, (True, math.inf))
            bad = _finite(v) and (v >= limit if high else v < limit)
            cells.append(f'<td class="num{" warn" if bad else ""}">{_e(fmt(v))}</td>')
        yield (f'<tr><td class="l">{_e(label)}</td>{"".join(cells)}'
               f'<td class="num">{_e(fmt(_get(s, "count") or 0))}</td>'
               f'<td class="hint">{_e(hint)}</td></tr>')


def _paired_rows(report: dict) -> Iterable[str]:
    for key, label, hint in PAIRED:
        p = report.get(key) or {}
        out, ref = _get(p, "output"), _get(p, "reference")
        yield (f'<tr><td class="l">{_e(label)}</td><td class="num">{_e(fmt(out))}</td>'
               f'<td class="num">{_e(fmt(ref))}</td><td class="num">{_e(_ratio(out, ref))}</td>'
               f'<td class="hint">{_e(hint)}</td></tr>')


def _coverage_html(c: dict) -> str:
    def pair(label: str, a: str, b: str, unit: str = "") -> str:
        va, vb = _get(c, a), _get(c, b)
        differ = va is not None and vb is not None and va != vb
        if isinstance(va, float) and isinstance(vb, float):
            differ = abs(va - vb) > 1e-3 * max(abs(va), abs(vb), 1.0)
        if a == "audio_in":  # losing the sound matters, gaining it does not
            differ = bool(va) and not vb
        cls = "num warn" if differ else "num"
        ta, tb = (fmt(v) + (unit if _finite(v) else "") for v in (va, vb))
        return (f'<tr><td class="l">{_e(label)}</td><td class="num">{_e(ta)}</td>'
                f'<td class="{cls}">{_e(tb)}</td></tr>')

    def single(label: str, key: str, warn_if_positive: bool = False) -> str:
        v = _get(c, key)
        cls = "num warn" if warn_if_positive and _finite(v) and v > 0 else "num"
        return f'<tr><td class="l">{_e(label)}</td><td class="{cls}">{_e(fmt(v))}</td></tr>'

    io = "".join([pair("frames", "frames_in", "frames_out"),
                  pair("fps", "fps_in", "fps_out"),
                  pair("duration", "duration_in", "duration_out", " s"),
                  pair("audio", "audio_in", "audio_out")])
    counts = "".join([single("frames compared", "frames_compared"),
                      single("frames swapped", "frames_swapped"),
                      single("frames passed through", "frames_passed_through"),
                      single("face missing in output", "frames_face_missing_in_output", True)])
    return ('<div class="cards"><div class="card"><table class="t"><tr><th class="l"></th>'
            '<th>reference</th><th>output</th></tr>' + io + '</table></div>'
            '<div class="card"><table class="t"><tr><th class="l">frames</th><th>count</th></tr>'
            + counts + '</table></div></div>')


def _sample_html(s: dict, fps: Any) -> str:
    frame = s.get("frame")
    when = ""
    if _finite(fps) and fps > 0 and isinstance(frame, int):
        when = f' <span class="muted">t = {frame / fps:.2f} s</span>'

    def fig(data: Any, label: str) -> str:
        if isinstance(data, (bytes, bytearray, memoryview)) and len(data) > 0:
            img = (f'<img src="{_data_uri(bytes(data))}" alt="{_e(label)} frame {_e(frame)}" '
                   'decoding="sync">')
        else:
            img = '<div class="missing">no image</div>'
        return f"<figure>{img}<figcaption>{_e(label)}</figcaption></figure>"

    faces = ""
    if s.get("reference_face_jpg") or s.get("output_face_jpg"):
        faces = (f'<div class="pair">{fig(s.get("reference_face_jpg"), "reference, eyes at full resolution")}'
                 f'{fig(s.get("output_face_jpg"), "output, eyes at full resolution")}</div>')
    return (f'<div class="sample"><div class="head"><span><b>frame {_e(frame)}</b>{when}</span>'
            f'<span class="why">{_e(s.get("why", ""))}</span></div>'
            f'<div class="pair">{fig(s.get("reference_jpg"), "reference")}'
            f'{fig(s.get("output_jpg"), "output")}</div>{faces}'
            f'<p class="caption">{_e(s.get("caption", ""))}</p></div>')


def _provenance_html(report: dict) -> str:
    """Does the output say it is a face swap (issue 30)? Its content credentials and the watermark."""
    prov = report.get("provenance")
    if not isinstance(prov, dict):
        return ""
    creds = prov.get("credentials")
    if not isinstance(creds, dict):
        manifest, cls = "not read (this container cannot carry C2PA credentials)", " warn"
    elif not creds.get("found"):
        manifest, cls = "none found (convert --no-credentials, or lost in a re-encode)", " warn"
    elif creds.get("valid"):
        who = creds.get("signer") or "?"
        manifest = (f"found and valid (signature and hashes), signed by {who}"
                    + (" (trusted here)" if creds.get("trusted") else " (signer not on a trust list)")
                    + ("; made by a trained algorithm" if creds.get("trained_algorithmic") else ""))
        consent = (creds.get("provenance") or {}).get("consent") or {}
        if consent:
            manifest += "; consent recorded" if consent.get("recorded") else "; no consent recorded"
        cls = ""
    else:
        manifest = f"found but INVALID ({', '.join(map(str, creds.get('failures') or [])) or creds.get('state')})"
        cls = " warn"
    total, marked = prov.get("watermark_frames"), prov.get("watermark_frames_marked")
    if prov.get("watermark_key_id") is None:
        mark, mcls = "not checked: this machine has no watermark key", " warn"
    else:
        share = f" ({100.0 * marked / total:.1f} %)" if total else ""
        payload = prov.get("watermark_payload")
        window = prov.get("watermark_window")
        over = f" over {window}-frame windows" if window else ""
        mark = (f"found in {marked} of {total} frames with a face{share}{over}, key {prov['watermark_key_id']}"
                + (f", payload {payload}" if payload else ", payload not read"))
        mcls = "" if total and marked * 2 >= total else " warn"
    return (f'<h2>Provenance</h2>\n<div class="cards"><p class="card{cls}">Content credentials (C2PA): '
            f'<b>{_e(manifest)}</b></p><p class="card{mcls}">Watermark: <b>{_e(mark)}</b></p></div>')


def build_html(report: dict, samples: list[dict], series: dict[str, list[float | None]]) -> str:
    """The whole page as a string (render_html writes it)."""
    name = Path(str(report.get("video") or "output")).name
    c = report.get("coverage") or {}
    notes = [str(n) for n in (report.get("notes") or [])]
    paths = "".join(f'<tr><th>{label}</th><td>{_e(report.get(key) or "-")}</td></tr>'
                    for key, label in (("video", "output"), ("reference", "reference"),
                                       ("workspace", "workspace")))
    notes_html = ""
    if notes:
        items = "".join(f"<li>{_e(n)}</li>" for n in notes)
        notes_html = ('<div class="notes"><strong>&#9888; Check before you trust the figures</strong>'
                      f'<ul>{items}</ul></div>')
    series = series or {}
    identity_plot = _svg_plot("Identity distance over time", "identity distance",
                              _plot_lines(series, "identity"),
                              threshold=(IDENTITY_THRESHOLD, f"same person ({IDENTITY_THRESHOLD})"))
    held_plot = _svg_plot("Held-apart identity (FaceNet)", "FaceNet distance",
                          _plot_lines(series, "held_apart"), threshold=(0.92, "same person (0.92)"))
    realism_plot = _svg_plot("Realism", "output / reference", _plot_lines(series, "realism"),
                             threshold=(1.0, "as the reference"))
    jitter_plot = _svg_plot("Jitter over time", "jitter (eye distances)", _plot_lines(series, "jitter"))
    eyes_plot = _svg_plot("Eye openness over time", "eye aspect ratio", _plot_lines(series, "eyes"))
    held = report.get("identity_held_apart") or {}
    trained = report.get("identity_trained_against") or {}
    verdict = ""
    if _get(held, "share_closer_to_src") is not None:
        warn = " warn" if _get(held, "trained_network_fooled") else ""
        verdict = (f'<p class="card{warn}">Frames whose output is closer to the source person than to the '
                   f'original: <b>{_e(_share(_get(trained, "share_closer_to_src")))}</b> by dlib\'s network '
                   f'(training optimises it), <b>{_e(_share(_get(held, "share_closer_to_src")))}</b> by FaceNet '
                   f'(held apart: never used in training).</p>')
    strip = "".join(_sample_html(s, _get(c, "fps_in")) for s in (samples or []))
    if not strip:
        strip = '<p class="muted">no samples</p>'
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Swap quality: {_e(name)}</title>
<style>{CSS}</style>
<script>{SELF_CHECK_JS}</script>
</head>
<body>
<h1>Face-swap quality report &mdash; {_e(name)}</h1>
<table class="paths">{paths}</table>
{notes_html}
<h2>Summary</h2>
<div class="cards">
<div class="card"><table class="t">
<tr><th class="l">metric</th><th>mean</th><th>median</th><th>worst</th><th>frames</th>
<th class="l">what it means</th></tr>
{"".join(_metric_rows(report))}
</table></div>
<div class="card"><table class="t">
<tr><th class="l"></th><th>output</th><th>reference</th><th>ratio</th><th class="l">what it means</th></tr>
{"".join(_paired_rows(report))}
</table></div>
</div>
{verdict}
{_agreement_html(report)}
{_people_html(report)}
{_regions_html(report)}
{_texture_html(report)}
{_surround_html(report)}
{_provenance_html(report)}
<h2>Coverage</h2>
{_coverage_html(c)}
<h2>Over time</h2>
{identity_plot}
{held_plot}
{realism_plot}
{jitter_plot}
{eyes_plot}
<h2>Samples <span class="muted">(reference | output)</span></h2>
<div class="strip">{strip}</div>
</body>
</html>
"""


def render_html(report: dict, samples: list[dict], series: dict[str, list[float | None]],
                path: Path) -> None:
    """Write the report page to ``path`` atomically, so a reader never sees half a page.

    The parent folder is created when missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, build_html(report, samples, series).encode("utf-8"))
