"""The flags every experiment shares and ``--resume``'s rules: the launch-only flags (never stored),
the run's stored command line, which flags a resumed run may change, and outer-step extensions."""
from __future__ import annotations

import argparse

from metarl.runs.run_dir import PRESETS, ConfigError, fail, stored_argv

# Flags of one launch, not of the run: (flag, number of values, help). Never stored in config.json;
# taken from the current command line on --resume (a resumed multi-host run may get a new
# coordinator; each process has its own id). The parser and ``run_argv`` both read this table.
LAUNCH = (("--overwrite", 0, "replace an existing run directory"),
          ("--resume", 0, "continue the run in --run-dir with its stored flags"),
          ("--coordinator", 1, "multi-host: coordinator host:port"),
          ("--num-processes", 1, "multi-host: number of processes"),
          ("--process-id", 1, "multi-host: this process's index"))
LAUNCH_FLAGS = {flag: nargs for flag, nargs, _ in LAUNCH}
# Flags a resumed run may change: they alter neither the meta-training nor its recorded series.
RESUME_SAFE = frozenset({"checkpoint_every"})


def experiment_parser(description: str, outer_step: str = "outer steps") -> argparse.ArgumentParser:
    """The flags every experiment has; errors are one ``error:`` line and exit 2 (argparse's own
    default prints the whole usage first). ``outer_step``: what one outer step is called."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--preset", default=None,
                    help=f"one of {', '.join(PRESETS)}; default: cpu without an accelerator, else paper")
    ap.add_argument("--run-dir", default=None, help="output directory (default: runs/<experiment>-<preset>)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint-every", type=int, default=10, help=f"{outer_step} between checkpoints")
    for flag, nargs, help_ in LAUNCH:
        if nargs:
            ap.add_argument(flag, type=int if flag != "--coordinator" else str, default=None, help=help_)
        else:
            ap.add_argument(flag, action="store_true", help=help_)
    ap.error = lambda message: fail(message)
    return ap


def run_argv(argv: list[str]) -> list[str]:
    """``argv`` without the launch flags: what config.json stores for --resume."""
    out, skip = [], 0
    for a in argv:
        if skip:
            skip -= 1
            continue
        name = a.split("=", 1)[0]
        if name in LAUNCH_FLAGS:
            skip = LAUNCH_FLAGS[name] if "=" not in a else 0
            continue
        out.append(a)
    return out


def with_counts(argv: list[str], counts: dict[str, int]) -> list[str]:
    """``argv`` with each extendable count flag explicit (``{"generations": 30}`` adds
    ``--generations 30`` unless given), so that --resume can tell an extension from the run's count."""
    out = list(argv)
    for dest, value in counts.items():
        flag = "--" + dest.replace("_", "-")
        if not any(a == flag or a.startswith(flag + "=") for a in argv):
            out += [flag, str(value)]
    return out


def resume_args(args, parse, experiment: str | None = None, argv: list[str] | None = None,
                extendable: tuple[str, ...] = ()):
    """For ``--resume``: (run dir, the run's stored arguments with this launch's flags).

    ``argv``: this launch's command line. A flag on it whose value differs from the stored run's is
    applied where that is safe (``RESUME_SAFE``) and refused (ConfigError naming the flag) otherwise:
    a flag given on the command line is never silently ignored. ``extendable``: count flags (e.g.
    ``generations``) that may grow: the run is extended to the new count, ``schedule_<dest>`` (where
    the parser has it) keeps the stored count (its schedules continue unchanged), ``extended_from`` holds the stored count
    and ``stored_argv`` the argv to write back; a smaller count is refused."""
    run_dir, stored = stored_argv(args.run_dir, experiment)
    stored = run_argv(stored)
    resumed = parse(stored)  # the run continues with its own configuration
    resumed.extended_from, resumed.stored_argv = None, stored
    if argv is not None:
        given = _without_run_dir(run_argv(argv))
        merged = parse(stored + given)  # argparse: the last value of a flag wins
        base = parse(stored)
        for dest, value in vars(merged).items():
            old = getattr(base, dest, None)
            if value == old or dest in ("run_dir", "resume", "extended_from", "stored_argv"):
                continue
            flag = "--" + dest.replace("_", "-")
            if dest in extendable and isinstance(value, int) and isinstance(old, int):
                if value < old:
                    raise ConfigError(f"--resume: {flag} {value} is below the stored run's {old}; a run "
                                      f"can be extended, not shortened")
                setattr(resumed, dest, value)
                resumed.extended_from = old
                resumed.stored_argv = stored + [flag, str(value)]
                schedule = f"schedule_{dest}"
                if hasattr(resumed, schedule):  # the count that the run's schedules span
                    if getattr(resumed, schedule) is None:
                        setattr(resumed, schedule, old)
                    resumed.stored_argv += [f"--schedule-{dest.replace('_', '-')}", str(getattr(resumed, schedule))]
                continue
            if dest not in RESUME_SAFE:
                raise ConfigError(f"--resume: {flag} {_shown(value)} differs from the stored run's "
                                  f"{_shown(getattr(resumed, dest, None))}; a resumed run keeps it "
                                  f"(start a new run to change it)")
            setattr(resumed, dest, value)
    resumed.resume = True
    for k in ("coordinator", "num_processes", "process_id"):
        setattr(resumed, k, getattr(args, k))
    return run_dir, resumed


def _without_run_dir(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--run-dir":
            skip = True
        elif not a.startswith("--run-dir="):
            out.append(a)
    return out


def _shown(value) -> str:
    return "(off)" if value is False else "(on)" if value is True else "(preset default)" if value is None \
        else repr(value) if isinstance(value, str) else str(value)
