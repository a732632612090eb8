"""Reports: one run's summary in the terminal (:mod:`.console`) and a whole sweep
(``python -m wcse.report``: :mod:`.sweep` finds its runs and failed or missing jobs,
:mod:`.planned` the jobs its multirun planned, :mod:`.tables` aggregates them over seeds,
:mod:`.figures` and :mod:`.markdown` write them out). Nothing is imported here: ``wcse.main``
imports the console table, which needs no plotting library."""
