"""The one exception type medsft raises for problems a user can fix (bad recipe, missing file, bad targets).

Entry points catch it and print its message as a single line instead of a traceback (``run_cli``, which also ends
the ranks of a distributed run safely).
"""

from __future__ import annotations

import atexit
import errno
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn


class MedsftError(Exception):
    """A user-facing error: the message names the file, row or field and says what to do."""


class RunStopped(Exception):
    """A run that stopped as the user asked, before its end (not an error): ``run_cli`` prints the message (where the
    checkpoint is, how to continue) as one line and exits with ``exit_code``, so that a chained command does not go
    on as if the run had finished."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@contextmanager
def hub_errors(what: str, name: str) -> Iterator[None]:
    """Turn a failed Hub or local load (offline, missing repo, typo) into a one-line error naming what failed.

    A Hub id (``name``'s first word) is first checked to be reachable, so an unreachable Hub fails in seconds with
    one line instead of the libraries' retries (``medsft.core.hub_access``).
    """
    from medsft.core.hub_access import require_hub
    from medsft.core.paths import is_hub_id

    if is_hub_id(name.split(" ", 1)[0]):
        require_hub(f"{what} '{name}'")
    try:
        yield
    except MedsftError:
        raise
    except (OSError, ValueError, ConnectionError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MedsftError(f"could not load {what} '{name}': {reason} (offline? pass a local path instead)") from e


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (``kill``, a job scheduler, the end of a machine's session) raises
    ``KeyboardInterrupt("SIGTERM")`` as Ctrl-C does, so what catches Ctrl-C keeps finished work for it too."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    if threading.current_thread() is not threading.main_thread():  # signals are handled in the main thread only
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# A write refused for want of room, as each writer says it: Python (OSError.errno), Rust's std::io (tokenizers,
# safetensors: "... (os error 28)"). torch's zip writer (optimizer.pt, rng_state.pth) names no cause ("[enforce fail
# at inline_container.cc] unexpected pos", from "basic_ios::clear: iostream error"): its failure counts as no room
# only when the disk is then all but full (the file it cut short holds whatever room there was).
_NO_ROOM_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NO_ROOM_WORDS = ("no space left on device", "disk quota exceeded", "file too large", "os error 28", "os error 122")
_TORCH_WRITER_WORDS = ("inline_container.cc", "pytorchstreamwriter", "iostream error")
_ALL_BUT_FULL = 16 * 2**20


def _free_bytes(folder: str | os.PathLike) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def no_room_reason(error: BaseException, folder: str | os.PathLike) -> str | None:
    """Why ``error`` (or an exception it was raised from) is a write into ``folder`` that found no room, or None."""
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = error.__cause__ or error.__context__
    for e in chain:
        if isinstance(e, OSError) and e.errno in _NO_ROOM_ERRNOS:
            return os.strerror(e.errno)
        if any(words in str(e).lower() for words in _NO_ROOM_WORDS):
            return str(e).strip().splitlines()[-1][:200]
    if any(words in str(e).lower() for e in chain for words in _TORCH_WRITER_WORDS):
        free = _free_bytes(folder)
        if free is not None and free < _ALL_BUT_FULL:
            return "torch could not write a file (its disk is full)"
    return None


@contextmanager
def disk_full_errors(folder: str | os.PathLike, then: str | Callable[[str], str]) -> Iterator[None]:
    """Within the block, a write into ``folder`` that finds no room (disk full, quota, file size limit) becomes one
    ``MedsftError`` naming the folder, the room left on its disk and ``then`` (what to do after freeing space; a
    callable is asked, with the folder, once the write has failed), not a traceback from the library writing."""
    try:
        yield
    except (MedsftError, RunStopped):
        raise
    except Exception as e:
        reason = no_room_reason(e, folder)
        if reason is None:
            raise
        free = _free_bytes(folder)
        room = "free space unknown" if free is None else f"{free / 2**20:.1f} MiB free on its disk now"
        then = then(str(folder)) if callable(then) else then
        raise MedsftError(f"writing to {folder} failed: {reason} ({room}); free some space, then {then}") from e


def run_cli(main: Callable[[], object], prog: str) -> None:
    """Run an entry point: a ``MedsftError`` becomes one line on stderr and exit status 2, not a traceback; a
    ``RunStopped`` one line and its own status.

    A rank of a distributed run ends through ``end_distributed_process`` (whichever way ``main`` ended, but for an
    unexpected exception, whose traceback is left to Python); any other process returns or exits as usual.
    """
    try:
        main()
        code = 0
    except MedsftError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        code = 2
    except RunStopped as e:
        print(f"{prog}: {e}", file=sys.stderr)
        code = e.exit_code
    except BaseException:
        destroy_process_group()
        raise
    if in_process_group():
        end_distributed_process(code)
    if code:
        sys.exit(code)


def in_process_group() -> bool:
    """Whether this process has a distributed process group (it is a rank of a launched run)."""
    dist = sys.modules.get("torch.distributed")  # never imported: no group (and no torch import for a quick CLI)
    return dist is not None and dist.is_available() and dist.is_initialized()


def end_distributed_process(code: int) -> NoReturn:
    """End a rank of a distributed run with exit status ``code``, without interpreter finalization.

    gloo's worker threads can still be releasing the tensors of a finished collective when the interpreter
    finalizes: the tensor's Python object needs the GIL, Python ends any thread that asks for it then, and the C++
    runtime aborts the process ("terminate called without an active exception", SIGABRT) after everything was saved,
    failing the whole launch (pytorch/pytorch#179291; seen in 4 of 26 two-process CPU FSDP launches here, and in CI;
    the core dump: a gloo ``runLoop`` thread destroying an ``AsyncAllgatherCoalescedWork`` in ``take_gil`` during
    ``Py_FinalizeEx``). Destroying the process group does not stop those threads (gloo's ``shutdown`` does nothing
    and the model keeps the group alive), so the rank does what a normal exit does while the interpreter is still
    whole — destroys the group, waits for its non-daemon threads, runs the ``atexit`` handlers (logging, weakref
    finalizers, experiment trackers), flushes stdout and stderr — and then ends with ``os._exit``.
    """
    destroy_process_group()
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more can be written anyway
            pass
    os._exit(code)


def destroy_process_group() -> None:
    """Destroy the distributed process group, if this process started one (accelerate's own teardown).

    Neither accelerate nor the Trainer does this at the end of a run.
    """
    from accelerate import PartialState

    # only a state that exists: PartialState() would otherwise set one up (and a process group, under a launcher)
    if PartialState._shared_state:
        PartialState().destroy_process_group()
    # a group started without accelerate (torch.distributed directly)
    if in_process_group():
        import torch.distributed as dist

        dist.destroy_process_group()
