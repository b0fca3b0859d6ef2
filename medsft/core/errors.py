"""The one exception type medsft raises for problems a user can fix (bad recipe, missing file, bad targets).

Entry points catch it and print its message as a single line instead of a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class MedsftError(Exception):
    """A user-facing error: the message names the file, row or field and says what to do."""


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


def run_cli(main: Callable[[], object], prog: str) -> None:
    """Run an entry point: a ``MedsftError`` becomes one line on stderr and exit status 2, not a traceback.

    A distributed run's process group is destroyed before the interpreter exits, whichever way ``main`` ended.
    """
    try:
        main()
    except MedsftError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(2)
    finally:
        destroy_process_group()


def destroy_process_group() -> None:
    """Destroy the distributed process group, if this process started one (accelerate's own teardown).

    Neither accelerate nor the Trainer does this at the end of a run. Left to interpreter shutdown, gloo's worker
    threads can still hold work objects and abort the process ("terminate called without an active exception",
    SIGABRT; pytorch/pytorch#179291) after everything was saved, which fails the whole launch.
    """
    from accelerate import PartialState

    # only a state that exists: PartialState() would otherwise set one up (and a process group, under a launcher)
    if PartialState._shared_state:
        PartialState().destroy_process_group()
    # a group started without accelerate (torch.distributed directly) aborts the same way
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
