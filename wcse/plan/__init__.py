"""``python -m wcse.plan <overrides>``: what a run or a grid will cost, before anything runs.

The same overrides as ``python -m wcse.main`` (``-m`` for a multirun's sweep), plus
``plan.<key>=value`` for the plan's assumptions (:mod:`wcse.plan.assumptions`). Each cell's
config is composed and its stages planned as a run would plan them (:func:`wcse.runner.plan`),
so the sample counts, requests and finetuning schedules are the run's own; the costs follow
from them (:mod:`wcse.plan.cost`). Only the dataset artifact is built (cheap: the problems).
"""
