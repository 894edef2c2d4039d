"""EPG on DirHalfCheetah: reward = direction x forward velocity, direction in {+1, -1}, unobserved.

    python -m experiments.epg_halfcheetah [--preset smoke|cpu|paper] [--run-dir DIR] [--seed N]

Presets: experiments.epg_common.locomotion_presets (paper = the EPG paper's sizes, a GPU/TPU job).
"""
from experiments.epg_common import locomotion_presets, main

ENV = "dir_halfcheetah"
PRESETS = locomotion_presets()

if __name__ == "__main__":
    main("epg_halfcheetah", ENV, PRESETS)
