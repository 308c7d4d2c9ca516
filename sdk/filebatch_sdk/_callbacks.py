"""The thread that calls the user's callbacks, so that a slow callback never holds up an upload.

Every callback of a submit runs on one dedicated thread, one at a time, in the order they were
posted: a callback never runs concurrently with another, and needs no lock of its own. Posting
only queues (it never waits for a callback), from any thread, asyncio code included.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from types import TracebackType
from typing import Any, Self

from filebatch_sdk.models import UploadProgress

logger = logging.getLogger("filebatch_sdk")

Callback = Callable[[Any], object]


class CallbackDispatcher:
    """Runs posted callbacks on one thread of its own; `close` (or leaving the `with`) delivers
    what is pending and stops it.

    Upload progress is coalesced per file (`post_progress`): while a file's report waits to be
    delivered, a newer report of the same file replaces it, so a slow callback sees each file's
    latest progress and the queue holds at most one progress report per file in flight. A file's
    last report (`UploadProgress.file_finished`) is never replaced, and one file's reports are
    delivered in the order they were posted.

    A callback that raises is logged (logger "filebatch_sdk", with its traceback) and the next one
    runs; the first such exception is kept in `first_error`.
    """

    def __init__(self, name: str = "filebatch-callbacks") -> None:
        self.first_error: Exception | None = None
        # Delivered front to back. Coalescable reports are keyed by (callback, file id), the
        # others by a number of their own; a replaced report moves to the back, so reports go
        # out in the order of their latest data (overall bytes never go backwards).
        self._pending: OrderedDict[Hashable, tuple[Callback, Any]] = OrderedDict()
        self._numbers = itertools.count()
        self._condition = threading.Condition()
        self._closing = False
        # Daemon: a dispatcher never closed must not keep the interpreter from exiting.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def post(self, callback: Callback, argument: Any) -> None:
        """Queue `callback(argument)`; returns at once."""
        self._queue(callback, argument)

    def progress_poster(
        self, callback: Callable[[UploadProgress], object] | None
    ) -> Callable[[UploadProgress], None] | None:
        """`callback` as the uploads call it: each report posted here (None stays None)."""
        if callback is None:
            return None
        return lambda progress: self.post_progress(callback, progress)

    def post_progress(self, callback: Callable[[UploadProgress], object], progress: UploadProgress) -> None:
        """Queue `callback(progress)`, replacing a report of the same file still waiting.

        `callback` must be hashable (functions and bound methods are)."""
        # Keyed by the callback's value, not its id: `obj.method` is a new object at each access.
        file_key = (callback, progress.file_id)
        # A file's last report replaces the one waiting but is never replaced itself.
        self._queue(callback, progress, key=None if progress.file_finished else file_key, replaces=file_key)

    def close(self) -> None:
        """Deliver every pending callback, then stop the thread. Idempotent."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("a callback cannot close its own dispatcher")
        with self._condition:
            self._closing = True
            self._condition.notify()
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _queue(
        self,
        callback: Callback,
        argument: Any,
        *,
        key: Hashable | None = None,
        replaces: Hashable | None = None,
    ) -> None:
        with self._condition:
            if self._closing:
                raise RuntimeError("the callback dispatcher is closed")
            if replaces is not None:
                self._pending.pop(replaces, None)
            self._pending[key if key is not None else next(self._numbers)] = (callback, argument)
            self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._pending and not self._closing:
                    self._condition.wait()
                if not self._pending:
                    return  # closing, and everything delivered
                _, (callback, argument) = self._pending.popitem(last=False)
            try:
                callback(argument)
            except Exception as error:
                logger.exception("callback %r raised; the run goes on", callback)
                if self.first_error is None:
                    self.first_error = error
