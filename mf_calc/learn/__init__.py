"""Active learning: explore with the current model, select where a committee disagrees, label with DFT, retrain,
evaluate; one resumable round per call (``mf-calc learn``)."""

from mf_calc.learn.explore import ExploreSettings, explore
from mf_calc.learn.loop import LearnSettings, next_round, open_run, run_round
from mf_calc.learn.select import SelectSettings, force_deviation, pick_random, pick_uncertain

__all__ = ["ExploreSettings", "LearnSettings", "SelectSettings", "explore", "force_deviation", "next_round",
           "open_run", "pick_random", "pick_uncertain", "run_round"]
