"""The course in one picture: the lifecycle every module sits in, drawn by one function for all its readers.

Module 00 shows it whole, every module shows it with itself marked (`show_lifecycle("02_pytorch_eager")`), and
`make notebooks` writes it to docs/course.svg for the README, so the picture cannot drift between them.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    module: str     # the module id, NN_slug
    label: str      # what the box says
    hands_on: str   # what this stage hands to the next (the arrow's label); "" for none
    x: float        # left edge, in the drawing's units
    y: float        # bottom edge
    width: float
    planned: bool = False  # a module still to come: drawn dashed


# The chain (01 -> 04) left to right, the setup under it, the capstone and module 06 over it.
STAGES = (
    Stage("00_setup", "00 · Setup: versions, devices, seeds, threads", "", 0.0, 0.0, 16.0),
    Stage("01_keras_prototype", "01 · Prototype\nin Keras", ".keras", 0.0, 1.2, 3.4),
    Stage("02_pytorch_eager", "02 · Custom model\nin PyTorch eager", "state dict", 4.2, 1.2, 3.4),
    Stage("03_onnx_export", "03 · Export\nto ONNX", ".onnx", 8.4, 1.2, 3.4),
    Stage("04_tensorflow_serving", "04 · Serve and compile\nwith TensorFlow", "", 12.6, 1.2, 3.4),
    Stage("05_capstone", "05 · Capstone: the whole chain again, on a tiny transformer", "", 0.0, 3.0, 16.0),
    Stage("06_performance", "06 · Make it fast: profile, compile, mixed precision, memory, a latency budget", "", 0.0,
          4.2, 16.0),
)
HEIGHT = {True: 0.8, False: 1.2}  # a full-width band is thinner than a stage of the chain
HERE, OTHER, PLANNED = "#f2a541", "#dbe7f3", "#ffffff"


def stage(module_id: str) -> Stage:
    for s in STAGES:
        if s.module == module_id:
            return s
    known = ", ".join(s.module for s in STAGES)
    raise KeyError(f"the course diagram has no module {module_id!r} (it has: {known})")


def lifecycle_figure(here: str | None = None):
    """The course diagram as a matplotlib Figure; `here` (a module id) is drawn highlighted."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    if here is not None:
        stage(here)  # an unknown id is an error, not a picture with nothing marked
    fig, ax = plt.subplots(figsize=(9, 3.4))
    for s in STAGES:
        height = HEIGHT[s.width > 10]
        fill = HERE if s.module == here else PLANNED if s.planned else OTHER
        ax.add_patch(FancyBboxPatch((s.x, s.y), s.width, height, boxstyle="round,pad=0.02,rounding_size=0.15",
                                    facecolor=fill, edgecolor="#33475b", linewidth=1.6 if s.module == here else 0.8,
                                    linestyle="--" if s.planned else "-"))
        ax.text(s.x + s.width / 2, s.y + height / 2, s.label, ha="center", va="center", fontsize=9,
                fontweight="bold" if s.module == here else "normal", color="#1b2a38")
        if s.hands_on:  # the artifact that carries the model to the next stage
            start, end = (s.x + s.width + 0.05, s.y + height / 2), (s.x + s.width + 0.75, s.y + height / 2)
            ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color="#33475b"))
            ax.text(s.x + s.width + 0.4, s.y + height + 0.12, s.hands_on, ha="center", va="bottom", fontsize=7.5,
                    color="#33475b", family="monospace")
    ax.text(16.0, -0.3, "prototype → custom model → interchange → serving: each module hands its model to the next",
            ha="right", va="top", fontsize=7.5, color="#5b6b7b")
    ax.set_xlim(-0.2, 16.2)
    ax.set_ylim(-0.7, 5.1)
    ax.axis("off")
    fig.tight_layout()
    return fig


def show_lifecycle(here: str | None = None) -> None:
    """Draw the course diagram in the notebook, `here` marked (the module you are in)."""
    import matplotlib.pyplot as plt

    lifecycle_figure(here)
    plt.show()


def svg_text() -> str:
    """The whole-course diagram as SVG text (docs/course.svg): stable bytes for the same matplotlib (no date, fixed
    ids, text kept as text), so the drift test can compare it."""
    import io

    import matplotlib
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"svg.hashsalt": "polyglot-lab", "svg.fonttype": "none"}):
        fig = lifecycle_figure()
        out = io.StringIO()
        fig.savefig(out, format="svg", metadata={"Date": None})
        plt.close(fig)
    return out.getvalue()
