"""Tiering: where every object should live, and the machinery that puts it there.

The package sits above the core service (:mod:`liquid.service`); the read path never
imports it. One :class:`~liquid.tiering.engine.TieringEngine` runs it all — the daemon and
the placement benchmark call the same passes. Its modules, one job each:

* :mod:`~liquid.tiering.rows`: what the planner knows about each object, read from the
  catalog (as rows, or as columns for a rebuild).
* :mod:`~liquid.tiering.values`: prices, what a read saves, the rank budgets sort by.
* :mod:`~liquid.tiering.ranked`: a budgeted tier's members under its caps.
* :mod:`~liquid.tiering.state`: what the engine remembers between cycles, a few bytes an object.
* :mod:`~liquid.tiering.budgets`: Budgets as caps, and what a plan reports against them.
* :mod:`~liquid.tiering.planner`: decisions and budgets turned into a plan (rebuild, cycle, admit).
* :mod:`~liquid.tiering.plan`: the plan a pass produces.
* :mod:`~liquid.tiering.apply`: carrying a plan out (journal, hot copies).
* :mod:`~liquid.tiering.explain`: one object's decision, for people.
* :mod:`~liquid.tiering.engine`: the entry point, and its production wiring.
* :mod:`~liquid.tiering.journal`: the move journal, the only way bytes change home.
* :mod:`~liquid.tiering.mover`: executes journaled moves and purges, crash-safe.
* :mod:`~liquid.tiering.gc`: reconciles stores against the catalog.
"""
