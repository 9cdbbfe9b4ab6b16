"""A run directory on disk: its file names, atomic writes, locks and checks before a resume.

Every state file a search writes goes through `atomic_write_json` / `atomic_save` (a temporary
file, then a rename), so a process killed at any moment leaves the old or the new version,
never half a file. Before a run resumes, `check_state_files` checks that each state file is
JSON of the structure our code reads, so a hand-edited file is named instead of failing deep
inside keras-tuner. `run_lock` keeps a second process out of a run that is in use, and
`prepare_run_directory` refuses a folder it can't use before anything is written or deleted;
with `overwrite=True` it deletes only a run this library created.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shlex
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlhf_keras.gan import GAN

RESULTS_FILE = "results.json"
BEST_MODEL_FILE = "best_model.keras"
SEARCH_FILE = "search.json"
BEST_INFO_FILE = "best_model.json"  # which trial best_model.keras comes from, and its score
ORACLE_FILE = "oracle.json"  # keras-tuner's name for the oracle state
TRIAL_FILE = "trial.json"  # keras-tuner's name for a trial's state, in trial_<id>/


# ------------------------------------------------------------------------------ reading, writing


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a `results.json` (none if it is absent), checked for the keys we read.

    Raises:
        ValueError: Naming the file, what is wrong in it and how to go on.
    """
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{path} is not valid JSON ({err}). It holds the results table of this search; "
            "restore it or move it away, then run again."
        ) from err
    problem = _mismatch(rows, _RESULTS_SCHEMA)
    if problem:
        raise ValueError(
            f"{path} is not a results table as this library writes it ({problem}). It holds "
            "the results table of this search; restore it or move it away, then run again."
        )
    return rows


def atomic_write_json(path: Path, payload: Any) -> None:
    # A per-process temporary name: distributed workers may write the same file at once.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=1))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_save(gan: GAN, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        gan.save(tmp)
        os.replace(tmp, path)  # a reader never sees a half-written best model
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock beside `path` (POSIX; elsewhere, no lock)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path.with_name("." + path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------ names


def check_project_name(name: Any) -> str:
    """Returns `name` if it is a single plain folder name, else raises ValueError.

    A project name joins the run directory (`directory/project_name`), and `overwrite=True`
    deletes that folder: a name such as `..`, `.` or `a/b` would put the run, or the deletion,
    somewhere else.

    Args:
        name: The `project_name` (CLI: `--project`).

    Raises:
        ValueError: If `name` is not a string, is empty or blank, is `.` or `..`, or holds a
            path separator or a NUL character.
    """
    separators = {"/", "\\", os.sep, os.altsep or "/"}
    if (
        not isinstance(name, str)
        or not name.strip()
        or name in (".", "..")
        or any(sep in name for sep in separators)
        or "\0" in name
    ):
        raise ValueError(
            f"project_name (CLI: --project) must be a single folder name such as 'rlhf' or "
            f"'mnist_run2', got {name!r}: no '/' or '\\', not '.' or '..', not empty. The run "
            "lives in directory/project_name; to put it elsewhere, change directory= (CLI: --dir)."
        )
    return name


# ------------------------------------------------------------------------------ the lock


def lock_path(project_dir: Path, owner: str | None = None) -> Path:
    """The lock file of a run: beside the run folder, so deleting the folder keeps the lock.

    Args:
        project_dir: The run folder (`directory/project_name`).
        owner: Who may hold it; default the keras-tuner worker id (`KERASTUNER_TUNER_ID`) in a
            distributed search, where each worker holds its own lock, else one lock per run.
    """
    project_dir = Path(project_dir)
    owner = os.environ.get("KERASTUNER_TUNER_ID") if owner is None else owner
    suffix = f".{owner}" if owner else ""
    return project_dir.parent / f".{project_dir.name}{suffix}.lock"


@contextlib.contextmanager
def run_lock(project_dir: Path, owner: str | None = None) -> Iterator[Path]:
    """Holds the run's lock for the block: one process per run folder (per worker id).

    The lock file (`directory/.<project_name>.lock`) holds the holder's pid, host, start time
    and command line, for the message a second process gets. The lock itself is an `flock` the
    operating system drops when its process dies, so a lock left by a killed process is taken
    over at once. The file is removed when the block ends. Take the lock after validating the
    arguments (it creates `directory`) and before `prepare_run_directory` (which may delete).

    Args:
        project_dir: The run folder (`directory/project_name`); it need not exist yet.
        owner: See `lock_path`.

    Yields:
        The lock file's path.

    Raises:
        ValueError: If another process holds the lock (naming its pid, host and command), or
            the directory can't be written.
    """
    project_dir = Path(project_dir)
    _check_writable(project_dir)
    path = lock_path(project_dir, owner)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = _acquire(path, project_dir)
    except OSError as err:
        raise ValueError(
            f"Cannot write the run directory {project_dir}: {err}. Pass directory= "
            "(CLI: --dir) a folder you can write to."
        ) from err
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still locked: no one else holds this file yet
        handle.close()  # drops the flock


def _acquire(path: Path, project_dir: Path) -> Any:
    """Opens and locks `path`, writing who holds it; raises ValueError if someone else does."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return _acquire_exclusive(path, project_dir)
    while True:
        handle = open(path, "a+")  # noqa: SIM115 - held open for the life of the lock
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise ValueError(_held_message(path, project_dir, _read_holder(path))) from None
        try:
            same = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()  # the holder removed this file as we opened it: lock the new one
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(_holder_record()))
    handle.flush()
    return handle


def _acquire_exclusive(path: Path, project_dir: Path) -> Any:  # pragma: no cover - not POSIX
    """Without flock: create the file exclusively, taking over one whose process is gone."""
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR)
        except FileExistsError:
            holder = _read_holder(path)
            if holder and holder.get("host") == socket.gethostname() and not _alive(holder):
                path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            raise ValueError(_held_message(path, project_dir, holder)) from None
        handle = os.fdopen(fd, "w")
        handle.write(json.dumps(_holder_record()))
        handle.flush()
        return handle
    raise ValueError(_held_message(path, project_dir, _read_holder(path)))


def _holder_record() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": _command_line(),
    }


def _command_line() -> str:
    if not sys.argv:
        return ""
    program = Path(sys.argv[0])
    # `python -m rlhf_keras.cli` and the console script are the same command to a user.
    name = "rlhf-keras" if program.parts[-2:] == ("rlhf_keras", "cli.py") else program.name
    return shlex.join([name, *sys.argv[1:]])


def _read_holder(path: Path) -> dict[str, Any] | None:
    # The holder writes its record right after locking: give it a moment.
    for _ in range(20):
        try:
            record = json.loads(path.read_text())
            if isinstance(record, dict) and "pid" in record:
                return record
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    return None


def _alive(holder: dict[str, Any]) -> bool:  # pragma: no cover - not POSIX
    try:
        os.kill(int(holder["pid"]), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


def _held_message(path: Path, project_dir: Path, holder: dict[str, Any] | None) -> str:
    if holder is None:
        who = "another process (its lock file gives no details)"
    else:
        who = f"process {holder.get('pid')} on {holder.get('host')}"
        if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            who += " (this very process)"
        if holder.get("command"):
            who += f", running `{holder['command']}` since {holder.get('started')}"
    return (
        f"The run in {project_dir} is in use by {who}: two searches in one run would train the "
        "same trials twice. Wait for it to finish or stop it, or use another project_name or "
        f"directory (CLI: --project, --dir). The lock is {path}; it is released when that "
        "process ends."
    )


# ------------------------------------------------------------------------------ state files

# The structure each state file must have: the keys our code (and keras-tuner's set_state)
# reads. A type or tuple of types; a dict of keys (a key ending in "?" may be absent); a
# one-item list (every item); `_Each` (every value of a dict).


class _Each:
    def __init__(self, schema: Any) -> None:
        self.schema = schema


_NUM = (int, float)
_NUM_OR_NONE = (int, float, type(None))
_STR_OR_NONE = (str, type(None))
_HYPERPARAMETERS = {"space": [{"class_name": str, "config": dict}], "values": dict}
_TRIAL_SCHEMA = {
    "trial_id": str,
    "hyperparameters": _HYPERPARAMETERS,
    "metrics": {"metrics": _Each({"direction": str,
                                  "observations": [{"value": (list, *_NUM), "step": int}]})},
    "score": _NUM_OR_NONE,
    "best_step": (int, type(None)),
    "status": str,
    "message": _STR_OR_NONE,
}
_ORACLE_SCHEMA = {
    "ongoing_trials": _Each(str),
    "hyperparameters": _HYPERPARAMETERS,
    "start_order": [str],
    "end_order": [str],
    "run_times": _Each(int),
    "retry_queue": [str],
    "seed": (int, type(None)),
    "seed_state": int,
    "tried_so_far": [str],
    "id_to_hash": _Each(_STR_OR_NONE),
    "display": {"search_start": _STR_OR_NONE, "trial_start": _Each(str),
                "trial_number": _Each(int)},
}
# What each oracle keeps under its own key in oracle.json; another oracle may add its own.
ORACLE_STATE_SCHEMAS: dict[str, Any] = {
    "reinforce": {
        "policy": {
            "learning_rate": _NUM, "entropy_coef": _NUM, "baseline_decay": _NUM,
            "optimizer": str, "init_std": _NUM, "max_grid": int, "baseline": _NUM,
            "updates": int,
            "entries": _Each({"hp": dict, "grid": (list, type(None)), "params": list,
                              "m": list, "v": list, "t": int}),
        },
        "pending": _Each({"values": dict, "action": dict, "log_prob": _NUM}),
        "rewards": _Each(dict),
        "reward_history": [list],
        "policy_history": [dict],
        "penalty": _NUM_OR_NONE,
        "rank_rewards": bool,
        "rng": {"bit_generator": str, "state": dict},
        "experience?": _Each({"action": dict, "log_prob": _NUM, "ok": _NUM, "reward": _NUM,
                              "rung": int}),
        "promoted?": list,
        "rungs?": (list, type(None)),
    },
}
_RESULTS_SCHEMA = [{
    "trial_id": str,
    "status": str,
    "values": dict,
    "score": _NUM_OR_NONE,
    "reward?": _NUM_OR_NONE,
    "seconds": _NUM_OR_NONE,
    "metrics": _Each(_NUM_OR_NONE),
}]
_BEST_INFO_SCHEMA = {"trial_id": str, "score": _NUM_OR_NONE}

_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer",
               float: "a number", bool: "true or false", type(None): "null"}


def _mismatch(value: Any, schema: Any, where: str = "") -> str | None:
    """The first place where `value` departs from `schema`, in words; None if it matches."""
    at = f" at {where}" if where else ""
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return f"expected an object{at}, found {_describe(value)}"
        for key, sub in schema.items():
            optional = key.endswith("?")
            key = key.rstrip("?")
            if key not in value:
                if optional:
                    continue
                return f"key {key!r} is missing{at}"
            found = _mismatch(value[key], sub, f"{where}.{key}" if where else key)
            if found:
                return found
        return None
    if isinstance(schema, list):
        if not isinstance(value, list):
            return f"expected a list{at}, found {_describe(value)}"
        for i, item in enumerate(value):
            found = _mismatch(item, schema[0], f"{where}[{i}]")
            if found:
                return found
        return None
    if isinstance(schema, _Each):
        if not isinstance(value, dict):
            return f"expected an object{at}, found {_describe(value)}"
        for key, item in value.items():
            found = _mismatch(item, schema.schema, f"{where}.{key}" if where else key)
            if found:
                return found
        return None
    types = schema if isinstance(schema, tuple) else (schema,)
    if not isinstance(value, types):
        return f"expected {_names(types)}{at}, found {_describe(value)}"
    return None


def _names(types: tuple[type, ...]) -> str:
    return " or ".join(dict.fromkeys(_TYPE_NAMES.get(t, t.__name__) for t in types))


def _describe(value: Any) -> str:
    text = json.dumps(value)
    return f"{_TYPE_NAMES.get(type(value), type(value).__name__)} {text[:40]}" + (
        "..." if len(text) > 40 else ""
    )


def check_state_files(project_dir: Path, state_key: str | None = "reinforce") -> None:
    """Raises ValueError naming the first state file of a run that can't be resumed from.

    Each file must be valid JSON of the structure our code and keras-tuner read (a hand-edited
    file would otherwise fail deep inside keras-tuner with a bare `KeyError`). Checked before
    a run resumes, so a bad file stops it before anything is written or deleted.

    Args:
        project_dir: The run folder (`directory/project_name`).
        state_key: The key this project's oracle keeps its state under in `oracle.json`;
            None accepts any oracle (e.g. to read a run rather than resume it).
    """
    project_dir = Path(project_dir)
    # Every oracle state we know the structure of is checked where present.
    oracle_schema = {**_ORACLE_SCHEMA, **{f"{k}?": v for k, v in ORACLE_STATE_SCHEMAS.items()}}
    candidates: list[tuple[Path, Any]] = [
        (project_dir / ORACLE_FILE, oracle_schema),
        (project_dir / RESULTS_FILE, _RESULTS_SCHEMA),
        (project_dir / SEARCH_FILE, dict),
        (project_dir / BEST_INFO_FILE, _BEST_INFO_SCHEMA),
    ]
    candidates += [(p, dict) for p in sorted(project_dir.glob("tuner*.json"))]
    candidates += [(p, dict) for p in sorted(project_dir.glob("chief*.json"))]
    candidates += [(p, _TRIAL_SCHEMA) for p in sorted(project_dir.glob(f"trial_*/{TRIAL_FILE}"))]
    loaded: dict[Path, Any] = {}
    for path, schema in candidates:
        if not path.is_file():
            continue
        try:
            state = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(_corrupt(path, project_dir, str(err))) from err
        if (path.name == ORACLE_FILE and state_key is not None and isinstance(state, dict)
                and state_key not in state):
            raise ValueError(
                f"{path} was not written by the REINFORCE oracle (it has no {state_key!r} "
                f"state), so the run in {project_dir} cannot resume. Use another project_name "
                "or directory, or pass overwrite=True to replace it (CLI: --project, --dir, "
                "--overwrite)."
            )
        problem = _mismatch(state, schema)
        if problem:
            raise ValueError(_corrupt(path, project_dir, problem))
        loaded[path] = state
    _check_trial_ids(project_dir, loaded)


def _check_trial_ids(project_dir: Path, loaded: dict[Path, Any]) -> None:
    """Trials live in trial_<id>/ and the oracle's running trials have their files."""
    for path, state in loaded.items():
        if path.name == TRIAL_FILE and path.parent.name != f"trial_{state['trial_id']}":
            raise ValueError(_corrupt(path, project_dir, (
                f"its trial_id is {state['trial_id']!r} but it lives in {path.parent.name}/")))
    oracle = loaded.get(project_dir / ORACLE_FILE)
    for trial_id in (oracle or {}).get("ongoing_trials", {}).values():
        if not (project_dir / f"trial_{trial_id}" / TRIAL_FILE).is_file():
            raise ValueError(_corrupt(project_dir / ORACLE_FILE, project_dir, (
                f"ongoing_trials names trial {trial_id!r}, but trial_{trial_id}/{TRIAL_FILE} "
                "does not exist")))


def _corrupt(path: Path, project_dir: Path, problem: str) -> str:
    return (
        f"{path} is corrupt ({problem}), so the run in {project_dir} cannot resume. "
        "Nothing was changed. Restore the file from a backup, or move the run folder "
        "away (or pass overwrite=True / --overwrite, which deletes it) to start afresh."
    )


# ------------------------------------------------------------------------------ preparing


def prepare_run_directory(project_dir: Path, fingerprint: dict[str, Any], overwrite: bool,
                          state_key: str = "reinforce") -> None:
    """Refuses a folder it can't use, before anything in it is written or deleted.

    Call it once every argument is validated and while holding `run_lock(project_dir)`: it
    deletes (with `overwrite`) and writes `search.json`, the mark of a run this library made.

    Args:
        project_dir: The run folder (`directory/project_name`).
        fingerprint: What the search is (data, space, budget...); a folder holding another
            search is refused, so two searches are never mixed.
        overwrite: Delete an earlier run in the folder first; only a folder holding our
            `search.json` (or an empty one) is ever deleted.
        state_key: The key this project's oracles keep their state under in `oracle.json`.

    Raises:
        ValueError: Naming the folder or file and how to go on.
    """
    project_dir = Path(project_dir)
    path = project_dir / SEARCH_FILE
    _check_writable(project_dir)
    if overwrite and project_dir.exists():
        _check_ours(project_dir)
        shutil.rmtree(project_dir)
    if path.exists():
        previous = _read_search(path, project_dir)
        if previous != fingerprint:
            changed = [k for k in fingerprint if previous.get(k) != fingerprint[k]]
            changed += [k for k in previous if k not in fingerprint]
            raise ValueError(
                f"{project_dir} holds a different search (differs in: "
                f"{', '.join(changed)}). Use another project_name or directory, or pass "
                "overwrite=True to replace it (CLI: --project, --dir, --overwrite)."
            )
    elif _holds_other_project(project_dir):
        raise ValueError(
            f"{project_dir} holds a keras-tuner project that this search did not "
            f"create (it has {ORACLE_FILE} or trial folders but no {SEARCH_FILE}), so "
            "overwrite=True would not delete it either. Use another project_name or "
            "directory (CLI: --project, --dir), or move that folder away yourself."
        )
    check_state_files(project_dir, state_key)
    if not path.exists():
        project_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, fingerprint)


def _read_search(path: Path, project_dir: Path) -> dict[str, Any]:
    try:
        previous = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(_corrupt(path, project_dir, str(err))) from err
    problem = _mismatch(previous, dict)
    if problem:
        raise ValueError(_corrupt(path, project_dir, problem))
    return previous


def _check_ours(project_dir: Path) -> None:
    """Before an overwrite: the folder is empty, or a run this library made (our search.json)."""
    if project_dir.is_symlink() or not project_dir.is_dir():
        kind = "a symbolic link" if project_dir.is_symlink() else "a file"
        raise ValueError(
            f"overwrite=True (CLI: --overwrite) would delete {project_dir}, but it is {kind}, "
            "not a run folder, so nothing was deleted. Use another project_name or directory "
            "(CLI: --project, --dir)."
        )
    if not any(project_dir.iterdir()):
        return
    mark = project_dir / SEARCH_FILE
    try:
        ours = isinstance(json.loads(mark.read_text()), dict)
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise ValueError(
            f"overwrite=True (CLI: --overwrite) would delete {project_dir}, but it is not a run "
            f"this library created (it has no valid {SEARCH_FILE}), so nothing was deleted. "
            "Check --dir and --project (project_name and directory); move or delete that folder "
            "yourself if you mean to replace it."
        )


def _check_writable(project_dir: Path) -> None:
    """Fails early on a folder that can't be created or written (even as root)."""
    probe_dir = project_dir
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    try:
        if not probe_dir.is_dir():
            raise NotADirectoryError(f"{probe_dir} is a file, not a folder")
        probe = probe_dir / f".rlhf_write_test.{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(
            f"Cannot write the run directory {project_dir}: {err}. Pass directory= "
            "(CLI: --dir) a folder you can write to."
        ) from err


def _holds_other_project(project_dir: Path) -> bool:
    if not project_dir.is_dir():
        return False
    if (project_dir / ORACLE_FILE).exists():
        return True
    return any(project_dir.glob(f"trial_*/{TRIAL_FILE}"))
