"""The paper's tables and users' experiments as data files, and their trial plans."""
from harness.experiments.plan import Cell, Plan, load_experiment, make_plan, paper_tables, subplan
from harness.experiments.schema import (Experiment, ExperimentError, parse_experiment,
                                        read_experiment_file, row_recipes)

__all__ = ["Cell", "Experiment", "ExperimentError", "Plan", "load_experiment", "make_plan",
           "paper_tables", "parse_experiment", "read_experiment_file", "row_recipes", "subplan"]
