"""Sequence layouts: how a history of items becomes encoder tokens and the next item decoder targets."""

from mmgr.layouts.base import LAYOUTS

__all__ = ["LAYOUTS"]
