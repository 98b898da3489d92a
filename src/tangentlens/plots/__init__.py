"""Figures: fixed regime colours and PNG output (``style``), metric curves of tidy frames
(``curves``), example grids and embedding scatters (``grids``)."""

from .style import REGIME_COLORS, VIEW_STYLES, color, figure, save

__all__ = ["REGIME_COLORS", "VIEW_STYLES", "color", "figure", "save"]
