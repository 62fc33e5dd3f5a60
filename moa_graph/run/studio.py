"""Studio's form: :class:`MoAContext`, what a run of a MoA graph may change, per run.

LangGraph Server (``langgraph dev``, Studio) shows a graph's ``context_schema`` as a
form. ``create_moa(config, context_schema=MoAContext)`` builds the nodes once, for
the deepest MoA a run may ask for, and each run's form becomes its
:class:`~moa_graph.graph.plan.RunOptions` in one place, :meth:`MoAContext.of`: which
preset's models the nodes call, with what sampling, how many layers run (later
layers pass through when fewer are asked), and whether proposers' tokens stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from moa_graph.config.model import MoAConfig
from moa_graph.config.presets import check_preset_name
from moa_graph.graph.plan import RunOptions


class MoAContext(BaseModel):
    """What a run of a MoA graph may change (shown as a form in Studio).

    Attributes:
        preset: Call this preset's models instead of the graph's own; its layers must
            have as many agents as the graph's.
        temperature: The default sampling temperature of every agent (agents with
            their own keep it), as in a request to ``moa serve`` with
            ``"moa": {"sampling": "all"}``.
        layers: How many proposer layers run (later layers pass through).
        show_proposals: Stream every proposer's tokens, not only the answer's.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str | None = Field(
        default=None,
        description="Call this preset's models (same layer widths); empty: the graph's own.",
    )
    temperature: float | None = Field(
        default=None, ge=0, le=2, description="Default sampling temperature of the agents."
    )
    layers: int | None = Field(
        default=None, ge=1, description="Proposer layers to run; empty: the preset's own count."
    )
    show_proposals: bool = Field(
        default=False,
        description="Stream every proposer's tokens too, not only the aggregator's answer.",
    )

    @field_validator("preset")
    @classmethod
    def _check_preset(cls, preset: str | None) -> str | None:
        """Refuse anything but a plain preset name (never a path); empty means none."""
        return check_preset_name(preset) if preset else None

    def run_options(self) -> RunOptions:
        """Return the options of the run this context describes."""
        return RunOptions(
            preset=self.preset,
            layers=self.layers,
            temperature=self.temperature,
            sampling="all",
            show_proposals=self.show_proposals,
        )

    @classmethod
    def of(cls, context: Any) -> RunOptions:
        """Return the options of a run's context (None, a mapping or a MoAContext).

        Raises:
            pydantic.ValidationError: The context is not a valid MoAContext.
        """
        if isinstance(context, MoAContext):
            return context.run_options()
        return cls.model_validate(context or {}).run_options()


PresetLoader = Callable[[str], MoAConfig]
"""Turns a preset name into a config, e.g. :func:`moa_graph.load_preset`."""
