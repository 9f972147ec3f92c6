"""Command batches: many dispatches recorded into one command buffer.

One submit plus fence wait costs far more than a dispatch recorded into an
existing command buffer (80-96 us vs 18-37 us on lavapipe), so launches are
grouped: `with dev.batch() as b: b.dispatch(...); b.dispatch(...)` submits
once on exit and waits for completion. Consecutive dispatches are separated
by a compute->compute memory barrier so each sees the previous one's writes.
"""

from __future__ import annotations

from ..ir.types import dtype_from_numpy
from .errors import DeviceError, check
from .memory import ELEMENT_TEXEL_FORMATS

_BIND_POINT_COMPUTE = 1
_STAGE_COMPUTE_SHADER, _STAGE_TRANSFER, _STAGE_BOTTOM = 0x800, 0x1000, 0x2000
_SHADER_STAGE_COMPUTE = 0x20
_QUERIES_PER_POOL = 512  # two per dispatch


class CommandBatch:
    """Records dispatches (and copies) into one command buffer; see module doc."""

    def __init__(self, device, timestamps: bool = False):
        if timestamps and not device.caps.timestamps_supported:
            raise DeviceError(f"{device.caps.name!r} has no timestamp queries on its compute queue")
        self.device = device
        self.timestamps = timestamps
        self.elapsed_ns: list[float] = []
        self.labels: list[str] = []   # one per dispatch (the kernel's name), parallel to elapsed_ns
        self._cmd = None
        self._keep = []            # tensors/buffers referenced until completion
        self._pools = []           # timestamp query pools in use
        self._queries = 0
        self._last_pipeline = None
        self._last_was = None      # "dispatch" | "transfer" | None, picks the barrier

    # -- context manager ---------------------------------------------------
    def __enter__(self):
        d = self.device
        d._lock.acquire()
        try:
            self._cmd, self._fence = d._acquire_command_buffer()
        except BaseException:
            d._lock.release()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        d = self.device
        lib = d.lib
        try:
            check(lib.vkEndCommandBuffer(self._cmd), "ending a command buffer")
            if exc_type is None and (self._last_was is not None):
                d._submit_and_wait(self._cmd, self._fence)
                if self.timestamps:
                    self._read_timestamps()
        finally:
            d._release_command_buffer(self._cmd, self._fence)
            d._release_query_pools(self._pools)
            self._cmd, self._keep, self._pools = None, [], []
            d._lock.release()
        return False

    # -- recording ---------------------------------------------------------
    def keep_alive(self, objects) -> None:
        """Hold `objects` until this batch has run (a recorded graph: while it lives), e.g. the
        tensors a kernel may reach through device addresses rather than bindings."""
        self._keep.append(objects)

    def _barrier(self, kind):
        """Make the previous command's writes visible to the next one."""
        prev = self._last_was
        if prev is not None:
            d = self.device
            if prev == kind == "dispatch":
                d.lib.vkCmdPipelineBarrier(self._cmd, _STAGE_COMPUTE_SHADER, _STAGE_COMPUTE_SHADER,
                                           0, 1, d._compute_barrier, 0, d.ffi.NULL, 0, d.ffi.NULL)
            else:
                stages = _STAGE_COMPUTE_SHADER | _STAGE_TRANSFER
                d.lib.vkCmdPipelineBarrier(self._cmd, stages, stages, 0, 1, d._full_barrier,
                                           0, d.ffi.NULL, 0, d.ffi.NULL)
        self._last_was = kind

    def dispatch(self, pipeline, buffers, push_constants=b"", groups=(1, 1, 1), texel_format=None,
                 label: str | None = None):
        """Record one dispatch of `pipeline` over `groups` workgroups.

        `buffers` are Tensors (or runtime Buffers), one per binding.
        `texel_format` optionally maps a binding index to a texel format name
        ("r32f", "r16f", "r32ui", "rgba32ui", ...) for "uniform_texel"
        bindings; otherwise the format follows the tensor's dtype.
        `label` names the dispatch in `labels` (spvjit launches pass the kernel's
        name), so a profile can group `elapsed_ns` by kernel.
        """
        cmd = self._cmd
        if cmd is None:
            raise DeviceError("CommandBatch.dispatch called outside `with device.batch():`")
        d = self.device
        lib = d.lib
        bindings = pipeline.bindings
        if len(buffers) != len(bindings):
            raise DeviceError(f"pipeline has {len(bindings)} bindings but {len(buffers)} buffers were given")
        bufs = [getattr(t, "_buf", t) for t in buffers]
        formats = None
        if pipeline.texel_slots:
            formats = tuple(_texel_format(buffers[i], texel_format, i) for i in pipeline.texel_slots)
        dset = d.descriptors.get(pipeline, bufs, formats)
        if len(groups) != 3:
            groups = (tuple(groups) + (1, 1))[:3]
        x, y, z = groups
        limit = d.caps.max_workgroup_count
        if x > limit[0] or y > limit[1] or z > limit[2] or min(x, y, z) < 0:
            raise DeviceError(f"grid {tuple(groups)} outside the device's workgroup count limit {limit}")
        self._keep.append(buffers)
        self.labels.append(label or "dispatch")
        self._barrier("dispatch")
        if pipeline is not self._last_pipeline:
            lib.vkCmdBindPipeline(cmd, _BIND_POINT_COMPUTE, pipeline.handle)
            self._last_pipeline = pipeline
            self._keep.append(pipeline)
        lib.vkCmdBindDescriptorSets(cmd, _BIND_POINT_COMPUTE, pipeline.layout, 0, 1, dset, 0, d.ffi.NULL)
        if push_constants:
            size = len(push_constants)
            if size > pipeline.push_constant_size:
                raise DeviceError(f"{size} bytes of push constants for a pipeline that takes "
                                  f"{pipeline.push_constant_size}")
            if size % 4 or type(push_constants) is not bytes:
                push_constants = bytes(push_constants) + b"\0" * (-size % 4)
            lib.vkCmdPushConstants(cmd, pipeline.layout, _SHADER_STAGE_COMPUTE, 0,
                                   len(push_constants), push_constants)
        if self.timestamps:
            pool, q = self._query()
            lib.vkCmdWriteTimestamp(cmd, _STAGE_BOTTOM, pool, q)
            lib.vkCmdDispatch(cmd, x, y, z)
            lib.vkCmdWriteTimestamp(cmd, _STAGE_BOTTOM, pool, q + 1)
        else:
            lib.vkCmdDispatch(cmd, x, y, z)

    def copy(self, src, dst, nbytes: int):
        """Record a buffer-to-buffer copy of `nbytes` (staging uploads/read-backs)."""
        d = self.device
        self._barrier("transfer")
        self._keep.append((src, dst))
        region = d.ffi.new("VkBufferCopy*", {"srcOffset": 0, "dstOffset": 0, "size": max(int(nbytes), 4)})
        d.lib.vkCmdCopyBuffer(self._cmd, src.handle, dst.handle, 1, region)

    def fill(self, buf, value: int = 0):
        """Record filling the whole buffer with a 32-bit pattern."""
        self._barrier("transfer")
        self._keep.append(buf)
        self.device.lib.vkCmdFillBuffer(self._cmd, buf.handle, 0, buf.size, value)

    # -- timestamps --------------------------------------------------------
    def _query(self):
        if self._queries % _QUERIES_PER_POOL == 0:
            pool = self.device._acquire_query_pool(_QUERIES_PER_POOL)
            self.device.lib.vkCmdResetQueryPool(self._cmd, pool, 0, _QUERIES_PER_POOL)
            self._pools.append(pool)
        q = self._queries % _QUERIES_PER_POOL
        self._queries += 2
        return self._pools[-1], q

    def _read_timestamps(self):
        d = self.device
        ffi, lib = d.ffi, d.lib
        period = d.caps.timestamp_period_ns
        mask = d._timestamp_mask
        out = []
        remaining = self._queries
        for pool in self._pools:
            n = min(remaining, _QUERIES_PER_POOL)
            data = ffi.new("uint64_t[]", n)
            # VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT
            check(lib.vkGetQueryPoolResults(d.handle, pool, 0, n, n * 8, data, 8, 0x1 | 0x2),
                  "reading timestamp queries")
            for i in range(0, n, 2):
                out.append(((data[i + 1] - data[i]) & mask) * period)
            remaining -= n
        self.elapsed_ns = out


def _texel_format(tensor, overrides, slot):
    if overrides is not None:
        fmt = overrides.get(slot) if isinstance(overrides, dict) else overrides
        if fmt is not None:
            return fmt
    dtype = getattr(tensor, "dtype", None)
    try:
        return ELEMENT_TEXEL_FORMATS[dtype_from_numpy(dtype).name][0]
    except (TypeError, KeyError):
        raise DeviceError(f"binding {slot}: no texel format for dtype {dtype}; "
                          f"pass texel_format={{{slot}: ...}}") from None
