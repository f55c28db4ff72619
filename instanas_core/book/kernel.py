"""The kernel that runs the book's notebooks: this interpreter, and the environment it inherits.

Notebooks store the kernel name ``python3``. In a virtual environment with ipykernel, ``python3``
is ipykernel's own spec (``.venv/share/jupyter/kernels/python3``, installed with the wheel, first on
Jupyter's path inside the environment) whose command is ``python``, which jupyter_client replaces by
``sys.executable``: the kernel is the interpreter that runs the book. :func:`resolve_kernel` checks
this before anything runs; if ``python3`` would start another interpreter (a user-level spec
pointing elsewhere, say), it writes a private spec for ``sys.executable`` into a temporary folder
and puts that first on ``JUPYTER_PATH`` for the run.

The book's kernels talk to the runner over local IPC (Unix-domain sockets in Jupyter's runtime
folder, readable by this user only) instead of Jupyter's default TCP on localhost: that is the fix
ipykernel itself suggests for the warning "Kernel is running over TCP without encryption", which
TCP kernels print at every start (:func:`kernel_manager_class`).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import BookError
from .notebooks import DEFAULT_NOTEBOOKS_DIR

__all__ = ["resolve_kernel", "numba_cache_dir", "kernel_environment", "kernel_manager_class"]


def _python_aliases() -> set[str]:
    return {"python", f"python{sys.version_info[0]}", "python%d.%d" % sys.version_info[:2]}


def _same_interpreter(executable: str) -> bool:
    if executable in _python_aliases():  # jupyter_client replaces these by sys.executable
        return True
    if os.path.abspath(executable) == os.path.abspath(sys.executable):
        return True
    try:  # a different path may still be this environment (another symlink to it)
        out = subprocess.run(
            [executable, "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True, timeout=30
        )
        return out.returncode == 0 and os.path.realpath(out.stdout.strip()) == os.path.realpath(sys.prefix)
    except (OSError, subprocess.SubprocessError):
        return False


def resolve_kernel(kernel_name: str = "python3") -> dict:
    """How ``kernel_name`` will start: ``{"name", "argv", "python", "source", "jupyter_path"}``.

    For ``python3`` the kernel must be this interpreter; if Jupyter's ``python3`` spec would start
    another one (or none exists), a private spec for ``sys.executable`` is written to a temporary
    folder, returned as ``jupyter_path`` to put first on ``JUPYTER_PATH`` while the book runs.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
        argv, resource_dir = list(spec.argv), spec.resource_dir
    except NoSuchKernel:
        argv, resource_dir = [], None
    if argv and (kernel_name != "python3" or _same_interpreter(argv[0])):
        python = sys.executable if argv[0] in _python_aliases() else argv[0]
        return {"name": kernel_name, "argv": argv, "python": python, "source": resource_dir, "jupyter_path": None}
    if kernel_name != "python3":
        raise BookError(f"No Jupyter kernel named {kernel_name!r}; `jupyter kernelspec list` shows the installed ones.")
    folder = Path(tempfile.mkdtemp(prefix="instanas-kernel-"))
    spec_dir = folder / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec_dir / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"}))
    return {
        "name": "python3",
        "argv": argv,
        "python": sys.executable,
        "source": f"private spec ({spec_dir})",
        "jupyter_path": str(folder),
    }


# A Unix-domain socket path holds at most 107 bytes; the IPC kernel's sockets are named
# "<runtime dir>/kernel-<uuid>-ipc-<port>", about 50 bytes after the folder.
_SOCKET_PATH_MAX = 107 - 50


def kernel_manager_class():
    """The kernel manager the book runs its notebooks with: jupyter_client's own, on IPC transport
    where Unix-domain sockets exist and Jupyter's runtime folder has a short enough path; otherwise
    the default TCP (which then prints ipykernel's warning, harmless on a single-user machine)."""
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.paths import jupyter_runtime_dir

    if os.name != "posix" or len(os.fsencode(jupyter_runtime_dir())) > _SOCKET_PATH_MAX:
        return AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        """jupyter_client's kernel manager with ``transport="ipc"``."""

        def __init__(self, **kwargs):
            kwargs.setdefault("transport", "ipc")
            super().__init__(**kwargs)

    return IPCKernelManager


def numba_cache_dir(run_dir: Path) -> Path:
    """The checkout's git-ignored ``.numba_cache`` when writable (umap-learn's compiled code is then
    reused across runs: a cold compile costs tens of seconds), else one inside the run folder."""
    if not (DEFAULT_NOTEBOOKS_DIR.parent / "pyproject.toml").is_file():  # not a checkout
        return run_dir / ".cache" / "numba"
    shared = DEFAULT_NOTEBOOKS_DIR.parent / ".numba_cache"
    try:
        shared.mkdir(exist_ok=True)
        if os.access(shared, os.W_OK):
            return shared
    except OSError:
        pass
    return run_dir / ".cache" / "numba"


@contextlib.contextmanager
def kernel_environment(run_dir: Path, kernel: dict) -> Iterator[dict]:
    """Environment the kernels inherit: a non-interactive matplotlib backend, a writable numba
    cache (umap-learn compiles at import), a fixed hash seed; restored afterwards."""
    wanted = {
        "MPLBACKEND": "agg",
        "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR") or str(numba_cache_dir(run_dir)),
        "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED") or "0",
    }
    if kernel.get("jupyter_path"):
        wanted["JUPYTER_PATH"] = os.pathsep.join(
            p for p in (kernel["jupyter_path"], os.environ.get("JUPYTER_PATH")) if p
        )
    Path(wanted["NUMBA_CACHE_DIR"]).mkdir(parents=True, exist_ok=True)
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        yield wanted
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if kernel.get("jupyter_path"):  # the private kernel spec lives as long as the run
            import shutil

            shutil.rmtree(kernel["jupyter_path"], ignore_errors=True)
