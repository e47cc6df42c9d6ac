"""One colour per contestant, the same in the page, the PNGs and the GIF, and the markers they never use.

Colours are fixed by name, not by position, so an optimizer keeps its colour in a race of any subset. None is
grey, black, white or gold: the surface is drawn in greys, the start is a white square and each minimum a
white star with a black edge.
"""

from __future__ import annotations

COLOURS: dict[str, str] = {
    "SGD": "#1f77b4",  # blue
    "Momentum": "#ff7f0e",  # orange
    "Nesterov": "#2ca02c",  # green
    "Adagrad": "#d62728",  # red
    "RMSprop": "#9467bd",  # purple
    "Adam": "#8c564b",  # brown
    "AMSGrad": "#e377c2",  # pink
    "AdamW": "#17becf",  # cyan
    "Lion": "#bcbd22",  # olive
    "ADOPT": "#393b79",  # navy
    "Lookahead(Adam)": "#6b6ecf",  # slate blue
    "Schedule-Free AdamW": "#7b4173",  # plum
}
OTHERS = ["#637939", "#e7969c", "#a55194", "#843c39", "#8ca252", "#e6550d"]  # for names not listed above

START = {"colour": "#ffffff", "edge": "#000000"}  # a white square
MINIMUM = {"colour": "#ffffff", "edge": "#000000"}  # a white star


def colour_of(name: str) -> str:
    """The colour of contestant ``name`` (a stable pick from :data:`OTHERS` for any other name)."""
    if name in COLOURS:
        return COLOURS[name]
    return OTHERS[sum(name.encode()) % len(OTHERS)]
