"""The overlay picture: the film panel, a colour bar and a caption, drawn with matplotlib.

Built on `matplotlib.figure.Figure` + the Agg canvas (no pyplot, no global backend
change). The layout is in whole pixels: the panel keeps the film's aspect, its longer
side clamped to `PANEL_LONG_SIDE`, and it is pasted 1:1 at the top left; the colour
bar sits to its right and the caption below, in a fixed font size, so text stays
legible on any film (a narrow film gets a wider picture, black beside it, for its caption).

Example:
    >>> import numpy as np
    >>> panel = np.zeros(panel_size((64, 48)) + (3,), "uint8")
    >>> picture = render_overlay(panel, ["Grad-CAM for class covid"], colorbar_label="relevance")
    >>> picture.shape[1] == panel.shape[1] + COLORBAR_WIDTH, picture.shape[0] > panel.shape[0]
    (True, True)
"""

import numpy as np

# The panel's longer side: small films are enlarged to be readable, large ones shrunk to keep files small.
PANEL_LONG_SIDE = (512, 1024)
COLORBAR_WIDTH = 130  # px right of the panel: bar, tick labels and a two-line label
MIN_FIGURE_WIDTH = 320  # px: room for a few words per caption row beside a narrow film
DPI = 100
FONT_POINTS = 11
LINE_HEIGHT = round(1.5 * FONT_POINTS * DPI / 72)  # px per caption line
PAD = 10  # px around the caption
BACKGROUND, TEXT = "black", "white"


def panel_size(shape):
    """(height, width) of the film panel for a film of `shape`: aspect kept, longer side clamped."""
    height, width = shape[:2]
    longer = max(height, width)
    scale = min(max(longer, PANEL_LONG_SIDE[0]), PANEL_LONG_SIDE[1]) / longer
    return max(1, round(height * scale)), max(1, round(width * scale))


def caption_rows(caption_lines, figure_width):
    """[(text, bold)] printed rows: each caption line wrapped, by measured text width, to the picture's width.

    The first line, the overlay's title, is bold.
    """
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    renderer = RendererAgg(1, 1, DPI)
    rows = []
    for index, line in enumerate(caption_lines):
        # a file name's line break or undecodable byte, written as \n or \udcXX: no font has a glyph for them
        line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)
        font = FontProperties(size=FONT_POINTS, weight="bold" if index == 0 else "normal")

        def fits(text, font=font):
            width = renderer.get_text_width_height_descent(text, font, ismath=False)[0]
            return width <= figure_width - 2 * PAD

        row = ""
        for word in line.split(" "):
            if row and not fits(f"{row} {word}"):
                rows.append((row, index == 0))
                row = word
            else:
                row = f"{row} {word}" if row else word
            while not fits(row):  # a word wider than the picture (a long file name): cut where it reaches the edge
                cut = next(end for end in range(len(row) - 1, 0, -1) if fits(row[:end]))
                rows.append((row[:cut], index == 0))
                row = row[cut:]
        rows.append((row, index == 0))
    return rows


def render_overlay(panel, caption_lines, colorbar_label=None, colormap="jet"):
    """RGB uint8 picture of a (height, width, 3) panel with a caption and optionally a colour bar.

    The colour bar runs over [0, 1] of `colormap`, from "low" to "high", with
    `colorbar_label` beside it; without a label there is no colour bar.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    height, width = panel.shape[:2]
    # at least MIN_FIGURE_WIDTH, so the caption of a very narrow film is not one word per line
    figure_width = max(width + (COLORBAR_WIDTH if colorbar_label else 0), MIN_FIGURE_WIDTH)
    rows = caption_rows(caption_lines, figure_width)
    caption_height = 2 * PAD + LINE_HEIGHT * len(rows)
    figure_height = height + caption_height
    figure = Figure(figsize=(figure_width / DPI, figure_height / DPI), dpi=DPI, facecolor=BACKGROUND)
    canvas = FigureCanvasAgg(figure)

    def box(x, y, w, h):  # pixels from the top left -> figure fractions from the bottom left
        return [x / figure_width, 1 - (y + h) / figure_height, w / figure_width, h / figure_height]

    axes = figure.add_axes(box(0, 0, width, height))
    axes.imshow(panel, interpolation="nearest", aspect="auto")
    axes.set_axis_off()
    if colorbar_label:
        bar = figure.add_axes(box(width + 16, 0.1 * height, 16, 0.8 * height))
        colorbar = figure.colorbar(ScalarMappable(Normalize(0, 1), colormap), cax=bar, ticks=[0, 0.5, 1])
        colorbar.ax.set_yticklabels(["low", "", "high"], color=TEXT, fontsize=FONT_POINTS)
        colorbar.ax.tick_params(color=TEXT)
        colorbar.set_label(colorbar_label, color=TEXT, fontsize=FONT_POINTS)
        colorbar.outline.set_edgecolor(TEXT)
    for index, (row, bold) in enumerate(rows):
        y = 1 - (height + PAD + index * LINE_HEIGHT) / figure_height
        weight = "bold" if bold else "normal"
        figure.text(PAD / figure_width, y, row, color=TEXT, fontsize=FONT_POINTS, weight=weight, va="top")
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
