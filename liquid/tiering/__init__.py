"""Tiering: where every object should live, and the machinery that puts it there.

The package sits above the core service (:mod:`liquid.service`); the read path never
imports it. Its modules, one job each:

* :mod:`~liquid.tiering.planner`: policy decisions and budgets turned into a plan.
* :mod:`~liquid.tiering.journal`: the move journal, the only way bytes change home.
* :mod:`~liquid.tiering.mover`: executes journaled moves and purges, crash-safe.
* :mod:`~liquid.tiering.gc`: reconciles stores against the catalog.
"""
