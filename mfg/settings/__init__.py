"""Settings of each solver family: a frozen config dataclass (what the solver reads) and the
strict schema that builds it from the scenario's ``solver:`` mapping. One module per family;
mfg.scenario's ``SOLVER_KINDS`` maps each YAML ``kind`` to its schema.
"""
