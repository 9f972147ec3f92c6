"""Ctrl-C during a dispatch surfaces only once the submitted work is done (runtime/device.py,
_sigint_deferred): a KeyboardInterrupt between vkQueueSubmit and the fence wait left the work
running on buffers that were then freed ("double free or corruption" at exit of an
interrupted `spvjit run`, about 1 in 10).  The signal is sent from another thread, as the
kernel delivers a process-wide SIGINT to whichever thread does not block it - often one of
the driver's own."""
import os
import signal
import threading

import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.runtime import get_device


@spvjit.kernel
def settle(out_ptr, steps, BLOCK: sl.constexpr):
    offs = sl.program_id(0) * BLOCK + sl.arange(0, BLOCK)
    acc = sl.zeros((BLOCK,), dtype=sl.float32)
    for _ in range(steps):
        acc = acc * 0.5 + 1.0          # 2 - 2**-i: reaches exactly 2.0 in f32 after 25 steps
    sl.store(out_ptr + offs, acc)


class _InterruptAfterSubmit:
    """The device's Vulkan library, except that vkQueueSubmit is followed by a SIGINT sent to
    the process from another thread (which the kernel may deliver to any thread)."""

    def __init__(self, lib):
        self._lib = lib
        self.sent = 0

    def __getattr__(self, name):
        return getattr(self._lib, name)

    def vkQueueSubmit(self, *args):
        result = self._lib.vkQueueSubmit(*args)
        sender = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGINT))
        sender.start()
        sender.join()
        self.sent += 1
        return result


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signals reach Python handlers only in the main thread")
def test_ctrl_c_during_a_dispatch_surfaces_after_the_work(monkeypatch):
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    BLOCK, programs, steps = 256, 512, 3000       # long enough to still run after the submit
    out = spvjit.tensor(np.zeros(BLOCK * programs, np.float32))
    settle[(programs,)](out, 30, BLOCK=BLOCK)     # compiled outside the interrupted call
    out.view_host()[:] = 0.0
    dev = get_device()
    lib = _InterruptAfterSubmit(dev.lib)
    monkeypatch.setattr(dev, "lib", lib)
    with pytest.raises(KeyboardInterrupt):
        settle[(programs,)](out, steps, BLOCK=BLOCK)
    host = out.view_host().copy()                 # mapped memory: no new submission to wait on
    monkeypatch.undo()
    assert lib.sent == 1
    np.testing.assert_array_equal(host, 2.0)      # every program finished before the interrupt
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # handler put back
