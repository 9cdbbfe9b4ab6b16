"""A run directory on disk: its file names, atomic writes, locks and checks before a resume.

Every state file a search writes goes through `atomic_write_json` / `atomic_save` (a temporary
file, then a rename), so a process killed at any moment leaves the old or the new version,
never half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlhf_keras.gan import GAN

RESULTS_FILE = "results.json"
BEST_MODEL_FILE = "best_model.keras"
SEARCH_FILE = "search.json"
BEST_INFO_FILE = "best_model.json"  # which trial best_model.keras comes from, and its score
ORACLE_FILE = "oracle.json"  # keras-tuner's name for the oracle state


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path} is not valid JSON ({err}). It holds the results table of this search; "
            "restore it or move it away, then run again."
        ) from err


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



def check_state_files(project_dir: Path) -> None:
    """Raises ValueError naming the first state file of a run that is not valid JSON.

    Checked before a run resumes, so a corrupt file stops it before anything is written or
    deleted.

    Args:
        project_dir: The run folder (`directory/project_name`).
    """
    candidates = [project_dir / name for name in (ORACLE_FILE, RESULTS_FILE, SEARCH_FILE)]
    candidates += sorted(project_dir.glob("tuner*.json")) + sorted(project_dir.glob("chief*.json"))
    candidates += sorted(project_dir.glob("trial_*/trial.json"))
    for path in candidates:
        if not path.is_file():
            continue
        try:
            json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(
                f"{path} is corrupt ({err}), so the run in {project_dir} cannot resume. "
                "Nothing was changed. Restore the file from a backup, or move the run folder "
                "away (or pass overwrite=True / --overwrite, which deletes it) to start afresh."
            ) from err



def prepare_run_directory(project_dir: Path, fingerprint: dict[str, Any], overwrite: bool,
                          state_key: str = "reinforce") -> None:
    """Refuses a folder it can't use, before anything in it is written or deleted.

    Args:
        project_dir: The run folder (`directory/project_name`).
        fingerprint: What the search is (data, space, budget...); a folder holding another
            search is refused, so two searches are never mixed.
        overwrite: Delete an earlier run in the folder first.
        state_key: The key this project's oracles keep their state under in `oracle.json`.

    Raises:
        ValueError: Naming the folder or file and how to go on.
    """
    path = project_dir / SEARCH_FILE
    _check_writable(project_dir)
    if overwrite and project_dir.exists():
        import shutil

        shutil.rmtree(project_dir)
    if path.exists():
        try:
            previous = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is corrupt ({err}); move it away or pass "
                             "overwrite=True to start afresh.") from err
        if previous != fingerprint:
            changed = [k for k in fingerprint if previous.get(k) != fingerprint[k]]
            raise ValueError(
                f"{project_dir} holds a different search (differs in: "
                f"{', '.join(changed)}). Use another project_name or directory, or pass "
                "overwrite=True to replace it (CLI: --project, --dir, --overwrite)."
            )
    elif _holds_other_project(project_dir):
        raise ValueError(
            f"{project_dir} holds a keras-tuner project that this search did not "
            f"create (it has {ORACLE_FILE} or trial folders but no {SEARCH_FILE}). Use "
            "another project_name or directory, or pass overwrite=True to replace it (CLI: "
            "--project, --dir, --overwrite)."
        )
    check_state_files(project_dir)
    _check_oracle_state(project_dir, state_key)
    if not path.exists():
        project_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, fingerprint)


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
    return any(project_dir.glob("trial_*/trial.json"))


def _check_oracle_state(project_dir: Path, state_key: str) -> None:
    path = project_dir / ORACLE_FILE
    if not path.is_file():
        return
    state = json.loads(path.read_text())  # valid: check_state_files ran first
    if not isinstance(state, dict) or state_key not in state:
        raise ValueError(
            f"{path} was not written by this project's oracle, so the run "
            f"in {project_dir} cannot resume. Use another project_name or directory, "
            "or pass overwrite=True to replace it (CLI: --project, --dir, --overwrite)."
        )
