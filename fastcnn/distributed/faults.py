"""Ending a job cleanly when one rank fails: one message, one exit status, no rank left waiting.

Two phases, two rules:

* **Setting up** (reading arguments, files and data, building the model): :func:`run_everywhere` runs the
  set-up on every rank with the other ranks' output held back, then one gather tells every rank how the others
  did.  When any rank failed, rank 0 prints that rank's one-line error (``fastcnn: error: rank 1: ...``) and
  every rank exits with its status: a file missing on one machine gives one message, not a hung job.
* **Training** (ranks meet in collectives every step): :func:`abort_on_error` turns an exception on one rank
  into its message on stderr and ``MPI_Abort``, which the launcher turns into the end of every rank with a
  non-zero status.  A rank that dies without a word (killed, out of memory) is noticed by the launcher, and
  in the worst case by the others' collectives, which give up after their timeout
  (:class:`~fastcnn.distributed.comm.Communicator`).
"""

import contextlib
import io
import sys
import traceback

__all__ = ["abort_on_error", "run_everywhere"]


@contextlib.contextmanager
def abort_on_error(comm, active=None):
    """End the whole MPI job when the body raises on this rank, instead of leaving the others waiting.

    An exception prints its traceback and ``fastcnn: error: rank R: Type: message`` on stderr, then calls
    ``MPI_Abort`` with status 1; a ``SystemExit`` with a non-zero status (a one-line ``fastcnn: error``
    already printed) aborts with that status.  ``KeyboardInterrupt`` passes (the launcher interrupts every
    rank).  ``active`` (a callable) limits this to when it returns True: before the first collective an
    error that every rank raises alike is left to propagate.  With one rank nothing changes.

    Examples
    --------
    ::

        with distributed.abort_on_error(comm):
            main()
    """
    try:
        yield
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if status and comm.size > 1 and (active is None or active()):
            comm.abort(status)
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        if comm.size > 1 and (active is None or active()):
            traceback.print_exc()
            comm.abort(1, f"fastcnn: error: rank {comm.rank}: {type(exc).__name__}: {exc}")
        raise


def run_everywhere(comm, setup):
    """``setup()`` on every rank; its result when every rank succeeded, else SystemExit on every rank.

    Rank 0's output goes out as it comes; the other ranks' standard output and error are held back (their
    copies of rank 0's lines).  A ``SystemExit`` (``fastcnn: error: ...`` and a status) or an exception on
    any rank becomes, after one gather, ``SystemExit`` with the first failing rank's status on every rank,
    rank 0 printing that rank's error when it is not its own.

    Parameters
    ----------
    comm : fastcnn.distributed.Communicator
    setup : callable ``() -> result``

    Returns
    -------
    object
        ``setup()``'s result on this rank.
    """
    status, text, result = _captured(setup, hold_back=not comm.is_root)
    outcomes = comm.allgather((status, text))
    failed = [(rank, s, t) for rank, (s, t) in enumerate(outcomes) if s]
    if not failed:
        return result
    rank, status, text = failed[0]
    if comm.is_root and rank != 0:
        lines = [line for line in text.splitlines() if line.strip()]
        message = lines[-1] if lines else "failed while setting up"
        prefix = "fastcnn: error: "
        body = message[len(prefix):] if message.startswith(prefix) else message
        sys.stderr.write(f"{prefix}rank {rank}: {body}\n")
        sys.stderr.flush()
    raise SystemExit(status)


def _captured(setup, hold_back):
    """``(status, error text, result)``: status 0 on success; the error text is what went to stderr."""
    err = io.StringIO() if hold_back else None
    try:
        with contextlib.ExitStack() as stack:
            if hold_back:
                stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
                stack.enter_context(contextlib.redirect_stderr(err))
            return 0, "", setup()
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not status:
            status = 1
        return status, err.getvalue() if hold_back else "", None
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # an unexpected error: its traceback, then the one line
        text = traceback.format_exc() + f"fastcnn: error: {type(exc).__name__}: {exc}\n"
        if not hold_back:
            sys.stderr.write(text)
        return 1, text, None
