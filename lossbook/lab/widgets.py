"""Widget builders shared by the chapters.

:func:`interactive_figure` wires sliders to a drawing function. The same drawing function is
called once more by the chapter outside the widget, so the rendered HTML (which has no kernel)
still shows the figure.
"""

from __future__ import annotations

from typing import Callable

import matplotlib.pyplot as plt

__all__ = ["interactive_figure", "float_slider", "int_slider", "dropdown"]


def float_slider(value: float, low: float, high: float, step: float, description: str):
    import ipywidgets as w

    return w.FloatSlider(value=value, min=low, max=high, step=step, description=description,
                         continuous_update=False, readout_format=".2f", style={"description_width": "initial"})


def int_slider(value: int, low: int, high: int, description: str, step: int = 1):
    import ipywidgets as w

    return w.IntSlider(value=value, min=low, max=high, step=step, description=description,
                       continuous_update=False, style={"description_width": "initial"})


def dropdown(options, value, description: str):
    import ipywidgets as w

    return w.Dropdown(options=options, value=value, description=description)


def interactive_figure(draw: Callable[..., object], **controls):
    """A widget: the ``controls`` (ipywidgets) above an output area where ``draw(**values)`` plots.

    ``draw`` receives the current value of every control by name and draws into a fresh figure;
    the figure is redrawn whenever a control changes.
    """
    import ipywidgets as w

    out = w.Output()

    def redraw(_change=None) -> None:
        with out:
            out.clear_output(wait=True)
            draw(**{name: c.value for name, c in controls.items()})
            plt.show()

    for c in controls.values():
        c.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox(list(controls.values()), layout=w.Layout(flex_flow="row wrap")), out])
