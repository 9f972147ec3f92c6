"""Recorded command buffers, replayed many times (the decode graph's foundation).

Recording costs Python time per dispatch; replaying a recorded buffer costs one
submit.  Values that change between replays must live in buffers the kernels
read (a push constant is frozen into the recording), e.g. a small "step"
tensor holding the position and token id, written from the host before each
replay (host-visible memory: no copy).
"""
from __future__ import annotations

from .commands import CommandBatch
from .errors import DeviceError, check


class RecordedGraph(CommandBatch):
    def __init__(self, device, timestamps: bool = False):
        super().__init__(device, timestamps)
        self._recorded = False
        self.dispatches = 0
        self.after_replay = []      # callables run after each replay (launch: loop-limit checks)

    def __enter__(self):
        d = self.device
        d._lock.acquire()
        try:
            self._cmd, self._fence = d._acquire_command_buffer(reusable=True)
        except BaseException:
            d._lock.release()
            raise
        return self

    def dispatch(self, *args, **kwargs):
        super().dispatch(*args, **kwargs)
        self.dispatches += 1

    def __exit__(self, exc_type, exc, tb):
        d = self.device
        try:
            check(d.lib.vkEndCommandBuffer(self._cmd), "ending a recorded command buffer")
            self._recorded = exc_type is None
        finally:
            d._lock.release()
            if exc_type is not None:
                self.close()
        return False

    def replay(self) -> None:
        """Run the recorded commands once more and wait for them."""
        if not self._recorded or self._cmd is None:
            raise DeviceError("replay() of a graph that was not recorded successfully, or was closed")
        d = self.device
        with d._lock:
            d._submit_and_wait(self._cmd, self._fence)
            if self.timestamps:
                self._read_timestamps()
        for hook in self.after_replay:
            hook()

    def close(self) -> None:
        """Give the command buffer and query pools back; the graph cannot replay after this."""
        if self._cmd is None:
            return
        d = self.device
        with d._lock:
            d._release_command_buffer(self._cmd, self._fence)
            d._release_query_pools(self._pools)
        self._cmd, self._keep, self._pools, self._recorded = None, [], [], False

    def __del__(self):
        try:
            self.close()
        except Exception:   # interpreter shutdown: the device may already be gone
            pass
