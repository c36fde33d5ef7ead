"""Drawing one still per scene with Pillow.

The layout is fixed per resolution and does not depend on the options, so a caption changes
pixels only inside :func:`caption_box`: a header band with the step title and counter, the
step's image fitted into the middle, the caption box at the bottom and a thin progress bar.
A scene is still for its whole duration, so each scene is drawn once and encoded many times.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from PIL import Image, ImageDraw, ImageFont

from .storyboard import Scene

Box = tuple[int, int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

BACKGROUND_TOP = (28, 36, 58)
BACKGROUND_BOTTOM = (10, 12, 22)
PANEL = (44, 54, 84)
ACCENT = (242, 166, 58)
TEXT = (245, 245, 240)
MUTED = (170, 178, 196)
CAPTION_BG = (0, 0, 0, 170)


@dataclass(frozen=True)
class Layout:
    width: int
    height: int
    margin: int
    header: Box
    body: Box
    caption: Box
    progress: Box


def layout(width: int, height: int) -> Layout:
    margin = max(2, round(min(width, height) * 0.04))
    header_h = max(4, round(height * 0.12))
    caption_h = max(4, round(height * 0.2))
    progress_h = max(1, round(height * 0.012))
    header = (margin, margin, width - margin, margin + header_h)
    caption = (margin, height - margin - caption_h, width - margin, height - margin)
    body = (margin, header[3] + margin // 2, width - margin, caption[1] - margin // 2)
    progress = (0, height - progress_h, width, height)
    return Layout(width, height, margin, header, body, caption, progress)


def caption_box(width: int, height: int) -> Box:
    """The only region where captions draw (left, top, right, bottom; right/bottom exclusive)."""
    return layout(width, height).caption


@cache
def font(size: int) -> Font:
    try:
        return ImageFont.load_default(size=max(6, size))
    except (ImportError, OSError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


@cache
def background(width: int, height: int) -> Image.Image:
    mask = Image.linear_gradient("L").resize((width, height))
    top = Image.new("RGB", (width, height), BACKGROUND_TOP)
    bottom = Image.new("RGB", (width, height), BACKGROUND_BOTTOM)
    return Image.composite(bottom, top, mask)


def wrap(text: str, face: Font, max_width: float, max_lines: int) -> list[str]:
    """Greedy word wrap; a word wider than the line is split; overflow ends with an ellipsis."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if face.getlength(candidate) <= max_width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while face.getlength(word) > max_width and len(word) > 1:
                cut = len(word) - 1
                while cut > 1 and face.getlength(word[:cut]) > max_width:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and face.getlength(last + "…") > max_width:
            last = last[:-1]
        lines = [*lines[: max_lines - 1], last + "…"]
    return lines


def _fit(image: Image.Image, box: Box) -> tuple[Image.Image, tuple[int, int]]:
    bw, bh = box[2] - box[0], box[3] - box[1]
    scale = min(bw / image.width, bh / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    fitted = image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)
    return fitted, (box[0] + (bw - size[0]) // 2, box[1] + (bh - size[1]) // 2)


def prefit(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale an image once to the size it is shown at (keeps memory to what is drawn)."""
    fitted, _ = _fit(image, layout(width, height).body)
    return fitted


def _progress(draw: ImageDraw.ImageDraw, lay: Layout, done: float) -> None:
    x0, y0, x1, y1 = lay.progress
    draw.rectangle((x0, y0, x1, y1), fill=PANEL)
    draw.rectangle((x0, y0, x0 + round((x1 - x0) * done), y1), fill=ACCENT)


def draw_scene(
    scene: Scene, width: int, height: int, image: Image.Image | None, captions: bool
) -> Image.Image:
    if scene.title_card:
        return draw_title_card(scene.title, scene.text, width, height)
    lay = layout(width, height)
    frame = background(width, height).copy()
    draw = ImageDraw.Draw(frame, "RGBA")
    hx0, hy0, hx1, hy1 = lay.header
    counter = f"{scene.index + 1} / {scene.count}"
    counter_font = font(round((hy1 - hy0) * 0.35))
    counter_w = counter_font.getlength(counter)
    draw.text((hx1, (hy0 + hy1) / 2), counter, font=counter_font, fill=MUTED, anchor="rm")
    if scene.title:
        title_font = font(round((hy1 - hy0) * 0.55))
        title = wrap(scene.title, title_font, hx1 - hx0 - counter_w - lay.margin, 1)[0]
        draw.text((hx0, (hy0 + hy1) / 2), title, font=title_font, fill=TEXT, anchor="lm")
    draw.line((hx0, hy1, hx1, hy1), fill=ACCENT, width=max(1, lay.margin // 6))
    if image is not None:
        fitted, at = _fit(image, lay.body)
        frame.paste(fitted, at, fitted)
    else:
        draw.rounded_rectangle(lay.body, radius=lay.margin, fill=PANEL)
        cx, cy = (lay.body[0] + lay.body[2]) / 2, (lay.body[1] + lay.body[3]) / 2
        big = font(round((lay.body[3] - lay.body[1]) * 0.4))
        draw.text((cx, cy), str(scene.index + 1), font=big, fill=ACCENT, anchor="mm")
    if captions and scene.text:
        cx0, cy0, cx1, cy1 = lay.caption
        box = (cx0, cy0, cx1 - 1, cy1 - 1)  # Pillow's end coordinates are inclusive
        draw.rounded_rectangle(box, radius=lay.margin // 2, fill=CAPTION_BG)
        pad = lay.margin // 2
        size = round((cy1 - cy0 - 2 * pad) / 3 / 1.2)
        face = font(size)
        lines = wrap(scene.text, face, cx1 - cx0 - 2 * pad, 3)
        line_h = size * 1.2
        y = (cy0 + cy1) / 2 - line_h * (len(lines) - 1) / 2
        for line in lines:
            draw.text(((cx0 + cx1) / 2, y), line, font=face, fill=TEXT, anchor="mm")
            y += line_h
    _progress(draw, lay, (scene.index + 1) / scene.count)
    return frame


def draw_title_card(
    title: str | None, description: str | None, width: int, height: int
) -> Image.Image:
    lay = layout(width, height)
    frame = background(width, height).copy()
    draw = ImageDraw.Draw(frame, "RGBA")
    inner = width - 4 * lay.margin
    title_font = font(round(height * 0.1))
    lines = wrap(title or "Untitled preview", title_font, inner, 2)
    line_h = round(height * 0.12)
    y = height * 0.4 - line_h * (len(lines) - 1) / 2
    for line in lines:
        draw.text((width / 2, y), line, font=title_font, fill=TEXT, anchor="mm")
        y += line_h
    draw.line(
        (width * 0.3, y - line_h * 0.3, width * 0.7, y - line_h * 0.3),
        fill=ACCENT,
        width=max(1, lay.margin // 4),
    )
    if description:
        face = font(round(height * 0.045))
        y += line_h * 0.2
        for line in wrap(description, face, inner, 4):
            draw.text((width / 2, y), line, font=face, fill=MUTED, anchor="mm")
            y += height * 0.06
    return frame
