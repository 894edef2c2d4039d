"""EPG on GoalAnt: meta-train on targets in the right half (x > 0), meta-test on the left half (x < 0).

    python -m experiments.epg_ant [--preset smoke|cpu|paper] [--run-dir DIR] [--seed N]

Presets: experiments.epg_common.locomotion_presets (paper = the EPG paper's sizes, a GPU/TPU job).
"""
from experiments.epg_common import locomotion_presets, main

ENV = "goal_ant"
PRESETS = locomotion_presets()

if __name__ == "__main__":
    main("epg_ant", ENV, PRESETS)
