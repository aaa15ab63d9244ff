"""Execute the book's notebooks with papermill under a profile and a device.

The book never executes notebooks itself (``execute_notebooks: "off"`` in ``book/_config.yml``):
this runner does, so that the same command serves CI (``--profile smoke``), a reader on a laptop
and a GPU machine, and so that a failing cell stops the build loudly instead of being rendered as
a traceback in the book.

Command line (console script ``rni-run``, or ``python -m robust_utils.runner``)::

    rni-run                                   # every notebook, profile auto, device auto
    rni-run --profile smoke                   # what CI runs
    rni-run --only 01_inference --profile laptop --device cpu
    rni-run --keep-going --summary runs/summary.json
    rni-run --profile full --device cuda --prebuild --keep-going --summary runs/full_gpu.json

Each notebook ``notebooks/<name>.ipynb`` is executed with the parameters ``PROFILE`` and
``DEVICE`` injected (the resolved profile name and device), the notebooks folder as working
directory and the environment variables ``RNI_PROFILE`` / ``RNI_DEVICE`` set for the kernel.
The executed copy goes to ``book/notebooks/<name>.ipynb``, where the book reads it, and a JSON
summary (one record per notebook) to ``book/notebooks/run_summary.json``.

For the kernel the runner also sets ``RNI_PROGRESS=off`` (no progress bars),
``RNI_WIDGETS=static`` (:func:`robust_utils.interactive.explore` draws its function once with
the controls' initial values instead of building widgets that wait for a reader) and
``RNI_CLAIMS_DIR`` (the output folder: :meth:`robust_utils.claims.ClaimsTable.save` writes
``<name>.claims.json`` there, and the summary records it). Each executed copy is then cleaned
(:mod:`robust_utils.render`: no stderr, no progress bars, parameters and self-check cells hidden)
and given a banner (profile, device, date, package version), and the reproduction scoreboard
(:mod:`robust_utils.scoreboard`) is rewritten from every chapter's claims.

A cell that runs longer than the timeout fails the run: by default 600 s under the smoke profile
(seconds per cell are expected) and 1800 s otherwise; ``--timeout`` overrides it.

Taught in the Introduction, section "How to run the book".
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Sequence

__all__ = [
    "NotebookFailed",
    "default_notebooks_dir",
    "default_output_dir",
    "host_info",
    "list_notebooks",
    "main",
    "run_notebooks",
    "write_json_atomic",
    "chapter_recipe_sets",
]

PROFILE_CHOICES = ("auto", "smoke", "laptop", "full")
DEVICE_CHOICES = ("auto", "cpu", "cuda")
KERNEL_NAME = "python3"
SUMMARY_NAME = "run_summary.json"
#: Default per-cell timeout in seconds, per profile (others: ``DEFAULT_TIMEOUT``).
PROFILE_TIMEOUTS = {"smoke": 600}
DEFAULT_TIMEOUT = 1800


class NotebookFailed(RuntimeError):
    """A notebook raised while the runner executed it.

    Attributes
    ----------
    notebook: the notebook's stem (e.g. ``"01_inference"``).
    cell_index: index of the failing cell in the executed copy (``None`` if unknown).
    output_path: the executed copy, kept for inspection.
    records: the summary records written so far.
    """

    def __init__(self, message: str, notebook: str, cell_index: int | None,
                 output_path: Path, records: list[dict]):
        super().__init__(message)
        self.notebook = notebook
        self.cell_index = cell_index
        self.output_path = output_path
        self.records = records


def _repo_root() -> Path:
    """The checkout this module lives in, else the current directory."""
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").exists() and (root / "notebooks").is_dir():
        return root
    return Path.cwd()


def default_notebooks_dir() -> Path:
    """``<repo>/notebooks``: the committed, output-free notebook sources.

    Taught in the Introduction, section "How to run the book".
    """
    return _repo_root() / "notebooks"


def default_output_dir() -> Path:
    """``<repo>/book/notebooks``: where the book reads the executed copies.

    Taught in the Introduction, section "How to run the book".
    """
    return _repo_root() / "book" / "notebooks"


def list_notebooks(folder: str | os.PathLike | None = None) -> list[str]:
    """Names (stems) of the notebooks in ``folder``, sorted.

    Parameters
    ----------
    folder: the folder to list; default ``<repo>/notebooks``. Checkpoint copies and files whose
        name starts with ``_`` or ``.`` are ignored.

    Returns
    -------
    list of str, e.g. ``["01_inference", "02_explainability"]``.

    Taught in the Introduction, section "How to run the book".
    """
    folder = Path(folder) if folder is not None else default_notebooks_dir()
    if not folder.is_dir():
        raise FileNotFoundError(f"notebook folder {str(folder)!r} does not exist; pass the folder "
                                "that holds the .ipynb sources (the repository's notebooks/).")
    return sorted(p.stem for p in folder.glob("*.ipynb")
                  if not p.name.startswith(("_", ".")) and "-checkpoint" not in p.name)


def host_info() -> dict:
    """Python, torch and CUDA versions and the GPU name (if any), for the run summary.

    Taught in the Introduction, section "How to run the book".
    """
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "hostname": platform.node()}
    try:
        import torch
        info["torch"] = torch.__version__
        info["cuda_available"] = bool(torch.cuda.is_available())
        info["cuda_version"] = torch.version.cuda
        info["cuda_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception as exc:  # torch missing or broken: still write the summary
        info["torch"] = None
        info["torch_error"] = f"{type(exc).__name__}: {exc}"
    return info


def _resolve(profile: str, device: str) -> tuple[str, str]:
    """Resolve ``auto`` profile/device to concrete names, raising on unknown ones."""
    if profile not in PROFILE_CHOICES:
        raise ValueError(f"unknown profile {profile!r}; use one of: {', '.join(PROFILE_CHOICES)}.")
    if device not in DEVICE_CHOICES:
        raise ValueError(f"unknown device {device!r}; use one of: {', '.join(DEVICE_CHOICES)}.")
    from robust_utils.config import pick_device, resolve_profile
    return resolve_profile(profile).name, pick_device(device).type


def write_json_atomic(path: Path, data) -> None:
    """Write JSON to ``path`` via a temporary file and ``os.replace`` (never half-written).

    Taught in the Introduction, section "How to run the book".
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@contextmanager
def _environ(**values: str):
    """Set environment variables for the duration of the block (the kernel inherits them)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _failing_cell(exc) -> tuple[int | None, str]:
    """Index and a one-line description of the cell a PapermillExecutionError points at."""
    cell_index = getattr(exc, "cell_index", None)
    ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    source = (getattr(exc, "source", "") or "").strip().splitlines()
    first = source[0] if source else ""
    return cell_index, f"{ename}: {evalue}" + (f"  [cell starts: {first[:80]!r}]" if first else "")


def _finish_copy(path: Path, profile: str, device: str, host: dict) -> None:
    """Clean the executed copy at ``path`` and put the banner under its title (in place)."""
    import nbformat

    import robust_utils
    from robust_utils import render
    nb = nbformat.read(path, as_version=4)
    render.clean_notebook(nb)
    name = host.get("cuda_device") if device == "cuda" else None
    render.add_banner(nb, render.banner_source(profile, device, robust_utils.__version__,
                                               device_name=name))
    nbformat.write(nb, path)


def run_notebooks(names: Sequence[str] | None = None, profile: str = "auto", device: str = "auto",
                  output_dir: str | os.PathLike | None = None,
                  summary_path: str | os.PathLike | None = None, keep_going: bool = False,
                  notebooks_dir: str | os.PathLike | None = None, log_output: bool = False,
                  timeout: int | None = None, progress_bar: bool | None = None,
                  echo: bool = True, prebuild: bool = False) -> list[dict]:
    """Execute notebooks with papermill and write a JSON summary.

    Parameters
    ----------
    names: notebook stems to run (e.g. ``["01_inference"]``); ``None`` runs all, sorted.
    profile: ``"auto"``, ``"smoke"``, ``"laptop"`` or ``"full"``; ``auto`` is resolved here
        (``RNI_PROFILE``, else ``full`` on CUDA, ``laptop`` on CPU) and the resolved name is
        injected as the notebook parameter ``PROFILE``.
    device: ``"auto"``, ``"cpu"`` or ``"cuda"``; resolved here and injected as ``DEVICE``.
    output_dir: where executed copies go; default ``<repo>/book/notebooks``.
    summary_path: the JSON summary; default ``<output_dir>/run_summary.json``.
    keep_going: run the remaining notebooks after a failure (the call still raises at the end).
    notebooks_dir: the sources; default ``<repo>/notebooks``.
    log_output: stream cell outputs to the log (papermill's ``log_output``).
    timeout: per-cell timeout in seconds; ``None``: 600 s for the smoke profile, 1800 s otherwise.
    progress_bar: papermill's per-cell progress bar; default on when stderr is a terminal.
    echo: print one progress line per notebook.
    prebuild: first train (or verify) every model of the selected chapters' recipe sets
        (notebook ``0N_*`` -> set ``partN``, see :func:`chapter_recipe_sets`) on the run's
        device and profile, so that the notebooks only load them; the summary's ``models``
        lists each model with its seconds and ``prebuild_seconds`` the total.

    Returns
    -------
    list of dict: one record per notebook with keys ``notebook``, ``profile``, ``device``,
    ``seconds``, ``status`` (``"ok"``, ``"failed"``, ``"skipped"``), ``error``, ``output``,
    ``timeout`` and ``claims`` (the claims file the notebook saved, else ``None``) with
    ``claims_counts`` (rows per verdict).

    Raises
    ------
    ValueError: unknown notebook name, profile or device.
    NotebookFailed: a notebook raised; its executed copy (with the traceback) is kept and the
        summary is written before raising.

    Taught in the Introduction, section "How to run the book".
    """
    src = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    available = list_notebooks(src)
    if names is None or len(names) == 0:
        selected = available
    else:
        if isinstance(names, str):
            names = [names]
        cleaned = [Path(n).stem if str(n).endswith(".ipynb") else str(n) for n in names]
        unknown = [n for n in cleaned if n not in available]
        if unknown:
            raise ValueError(f"unknown notebook name(s) {unknown}; valid names in {src}: "
                             f"{', '.join(available) if available else '(none)'}.")
        selected = sorted(dict.fromkeys(cleaned))
    if not selected:
        raise FileNotFoundError(f"no notebooks found in {src}.")
    profile_name, device_name = _resolve(profile, device)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0):
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}.")
    if timeout is None:
        timeout = PROFILE_TIMEOUTS.get(profile_name, DEFAULT_TIMEOUT)

    out_dir = Path(output_dir) if output_dir is not None else default_output_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = Path(summary_path) if summary_path is not None else out_dir / SUMMARY_NAME
    if progress_bar is None:
        progress_bar = sys.stderr.isatty()

    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    host = host_info()
    records: list[dict] = [
        {"notebook": n, "profile": profile_name, "device": device_name, "seconds": None,
         "status": "skipped", "error": None, "output": str(out_dir / f"{n}.ipynb"),
         "timeout": timeout, "claims": None, "claims_counts": None}
        for n in selected
    ]

    models: list[dict] = []
    prebuild_seconds = None

    def write_summary() -> None:
        write_json_atomic(summary, {
            "timestamp": started,
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "profile_requested": profile, "device_requested": device,
            "profile": profile_name, "device": device_name,
            "host": host, "prebuild_seconds": prebuild_seconds, "models": models, "notebooks": records,
        })

    if prebuild:
        from robust_utils import cache, recipes as _recipes
        from robust_utils.config import progress_mode
        wanted = {}
        for set_name in chapter_recipe_sets(selected):
            for label, r in _recipes.recipe_set(set_name, profile_name).items():
                wanted.setdefault(r.key, (f"{set_name}: {label}", r))
        t_pre = time.perf_counter()
        for j, (label, r) in enumerate(wanted.values(), 1):
            if echo:
                print(f"[model {j}/{len(wanted)}] {label} ...", end="", flush=True)
            # RNI_PROGRESS=text (a log, e.g. tools/device/run.sh) keeps the training bars, rarely updated
            row, = cache.build({label: r}, device=device_name,
                               progress=progress_bar or progress_mode() == "text")
            row.pop("recipe", None)
            models.append(row)
            prebuild_seconds = round(time.perf_counter() - t_pre, 2)
            write_summary()
            if echo:
                print(f" {row['status']} ({row['seconds']:.1f} s)", flush=True)
        prebuild_seconds = round(time.perf_counter() - t_pre, 2)

    first_failure: NotebookFailed | None = None
    width = max(len(n) for n in selected)
    for i, (name, rec) in enumerate(zip(selected, records), 1):
        out_path = out_dir / f"{name}.ipynb"
        if echo:
            print(f"[{i}/{len(selected)}] {name:<{width}}  profile={profile_name} device={device_name} ...",
                  end="", flush=True)
        t0 = time.perf_counter()
        kwargs = {"execution_timeout": timeout}
        claims_path = out_dir / f"{name}.claims.json"
        claims_path.unlink(missing_ok=True)  # a file from an earlier run must not be recorded
        try:
            with _environ(RNI_PROFILE=profile_name, RNI_DEVICE=device_name, RNI_PROGRESS="off",
                          RNI_WIDGETS="static", RNI_CLAIMS_DIR=str(out_dir.resolve())):
                pm.execute_notebook(
                    str(src / f"{name}.ipynb"), str(out_path),
                    parameters={"PROFILE": profile_name, "DEVICE": device_name},
                    kernel_name=KERNEL_NAME, cwd=str(src), log_output=log_output,
                    progress_bar=progress_bar, **kwargs)
        except Exception as exc:  # noqa: BLE001 - reported, summarised and re-raised below
            rec["seconds"] = round(time.perf_counter() - t0, 2)
            rec["status"] = "failed"
            if isinstance(exc, PapermillExecutionError):
                cell_index, desc = _failing_cell(exc)
                rec["cell_index"] = cell_index
                rec["error"] = desc
                where = f"cell {cell_index} (In [{exc.exec_count}])"
            else:
                cell_index, where = None, "before or outside cell execution"
                rec["error"] = f"{type(exc).__name__}: {exc}"
            write_summary()
            msg = (f"notebook {name!r} FAILED in {where} after {rec['seconds']:.1f} s: {rec['error']}\n"
                   f"  executed copy kept for inspection: {out_path}")
            if echo:
                print(" FAILED", flush=True)
                print(msg, file=sys.stderr, flush=True)
                if isinstance(exc, PapermillExecutionError):
                    print(str(exc), file=sys.stderr, flush=True)
            failure = NotebookFailed(msg, name, cell_index, out_path, records)
            failure.__cause__ = exc
            if not keep_going:
                raise failure
            first_failure = first_failure or failure
            continue
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        rec["status"] = "ok"
        _finish_copy(out_path, profile_name, device_name, host)
        if claims_path.exists():
            from robust_utils.claims import ClaimsTable
            rec["claims"] = str(claims_path)
            rec["claims_counts"] = ClaimsTable.from_json(claims_path).counts()
        write_summary()
        if echo:
            print(f" ok ({rec['seconds']:.1f} s)", flush=True)

    write_summary()
    from robust_utils.scoreboard import write_scoreboard
    write_scoreboard(out_dir)
    if first_failure is not None:
        failed = [r["notebook"] for r in records if r["status"] == "failed"]
        raise NotebookFailed(f"{len(failed)} notebook(s) failed: {', '.join(failed)}; "
                             f"see {summary}.", first_failure.notebook, first_failure.cell_index,
                             first_failure.output_path, records)
    return records


def chapter_recipe_sets(names: Sequence[str]) -> list[str]:
    """The recipe sets of notebooks ``0N_*`` (``partN``) that exist, in order; others have none.

    Taught in the Introduction, section "How to run the book".
    """
    from robust_utils.recipes import RECIPE_SETS
    out = []
    for n in names:
        stem = Path(str(n)).stem
        head = stem.split("_", 1)[0]
        if head.isdigit() and f"part{int(head)}" in RECIPE_SETS and f"part{int(head)}" not in out:
            out.append(f"part{int(head)}")
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rni-run",
        description="Execute the book's notebooks with papermill under a profile and a device; "
                    "executed copies go where the book reads them.")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="notebook stems to run (default: all, sorted), e.g. --only 01_inference")
    p.add_argument("--profile", default="auto", choices=PROFILE_CHOICES,
                   help="smoke (CI, seconds), laptop (CPU, minutes), full (one GPU); "
                        "auto = RNI_PROFILE, else full on CUDA and laptop otherwise (default)")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES,
                   help="compute device injected as DEVICE (default: auto)")
    p.add_argument("--notebooks-dir", default=None,
                   help="folder of the notebook sources (default: <repo>/notebooks)")
    p.add_argument("--output-dir", default=None,
                   help="folder for executed copies (default: <repo>/book/notebooks)")
    p.add_argument("--summary", default=None, metavar="PATH",
                   help="JSON summary path (default: <output-dir>/run_summary.json)")
    p.add_argument("--keep-going", action="store_true",
                   help="run the remaining notebooks after a failure (still exits non-zero)")
    p.add_argument("--log-output", action="store_true",
                   help="stream cell outputs to the terminal (papermill's log_output)")
    p.add_argument("--timeout", type=int, default=None, metavar="SECONDS",
                   help="per-cell timeout (default: 600 for the smoke profile, 1800 otherwise)")
    p.add_argument("--prebuild", action="store_true",
                   help="first train or verify every model the selected chapters need (their recipe "
                        "sets), timing each in the summary")
    p.add_argument("--list", action="store_true", help="list the notebook names and exit")
    return p


def main(argv: Iterable[str] | None = None) -> int:
    """Entry point of ``rni-run``; returns the process exit status (0 ok, 1 failed, 2 usage).

    Taught in the Introduction, section "How to run the book".
    """
    parser = _parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.list:
        try:
            print("\n".join(list_notebooks(args.notebooks_dir)))
        except FileNotFoundError as exc:
            parser.error(str(exc))
        return 0
    if args.log_output:
        import logging
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.perf_counter()
    try:
        records = run_notebooks(args.only, profile=args.profile, device=args.device,
                                output_dir=args.output_dir, summary_path=args.summary,
                                keep_going=args.keep_going, notebooks_dir=args.notebooks_dir,
                                log_output=args.log_output, timeout=args.timeout,
                                prebuild=args.prebuild)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        if isinstance(exc, NotebookFailed):
            print(f"rni-run: {exc}", file=sys.stderr)
            return 1
        print(f"rni-run: error: {exc}", file=sys.stderr)
        return 2
    print(f"rni-run: {len(records)} notebook(s) ok in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
