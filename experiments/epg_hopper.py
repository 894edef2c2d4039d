"""EPG on RandomHopper: link masses, friction and gravity randomised per task.

    python -m experiments.epg_hopper [--preset smoke|cpu|paper] [--run-dir DIR] [--seed N]

Presets: experiments.epg_common.locomotion_presets (paper = the EPG paper's sizes, a GPU/TPU job).
"""
from experiments.epg_common import locomotion_presets, main

ENV = "random_hopper"
PRESETS = locomotion_presets()

if __name__ == "__main__":
    main("epg_hopper", ENV, PRESETS)
