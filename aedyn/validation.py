"""Validation tools (docs/theory.md §7): the one-step Monte-Carlo check of the right-hand side."""

from ._validation import one_step_check as one_step_check
