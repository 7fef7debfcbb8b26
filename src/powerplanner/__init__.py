"""powerplanner: keep disaggregated LLM inference inside a GPU power budget with the least energy.

Three parts share this package: the planner (``planning/`` + ``live/``), the node power agent
(``agent/``) and the embedded cluster simulator (``sim/``). ``model/`` and ``planning/`` are the
pure core; everything else is the imperative shell around it.
"""

__version__ = "0.1.0"
