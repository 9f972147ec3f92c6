"""Semantic rules for memory, reductions, dot and tile constructors (see semantic.py)."""
from __future__ import annotations

from ..ir import types as T
from ..ir.ops import ATOMIC_SCOPES, ATOMIC_SEMS, atomic_type_error
from ..language.core import tensor
from . import block_pointer
from .block_pointer import BlockPointer
from .errors import SemanticError
from .semantic import Semantic, is_number, promote, unwrap


def _const_int(x, what: str) -> int:
    x = unwrap(x)
    if isinstance(x, bool) or not isinstance(x, int):
        raise SemanticError(f"{what} must be a constexpr integer, got {x!r}")
    return x


def _shape(shape) -> tuple[int, ...]:
    shape = unwrap(shape)
    if isinstance(shape, int):
        shape = (shape,)
    return tuple(_const_int(s, "a tensor dimension") for s in shape)


class KernelSemantic(Semantic):
    def program_id(self, axis) -> tensor:
        axis = _const_int(axis, "program_id's axis")
        if axis not in (0, 1, 2):
            raise SemanticError(f"program_id axis must be 0, 1 or 2, got {axis}")
        return tensor(self.b.op1("program_id", [], T.TileType((), T.i32), axis=axis))

    def num_programs(self, axis) -> tensor:
        axis = _const_int(axis, "num_programs's axis")
        if axis not in (0, 1, 2):
            raise SemanticError(f"num_programs axis must be 0, 1 or 2, got {axis}")
        return tensor(self.b.op1("num_programs", [], T.TileType((), T.i32), axis=axis))

    def arange(self, start, end) -> tensor:
        start = _const_int(start, "arange's start")
        end = _const_int(end, "arange's end")
        n = end - start
        if n <= 0 or n & (n - 1):
            raise SemanticError(f"arange's range must be a power of two, got {end} - {start} = {n}")
        return tensor(self.b.op1("arange", [], T.TileType((n,), T.i32), start=start, end=end))

    def full(self, shape, value, dtype) -> tensor:
        dtype = unwrap(dtype)
        if not isinstance(dtype, T.DType):
            raise SemanticError(f"expected a dtype, got {dtype!r}")
        value = unwrap(value)
        if isinstance(value, tensor):
            return self.broadcast_to(self.cast(value, dtype), _shape(shape))
        return self.constant(value, dtype, _shape(shape))

    def assume(self, x, div=None, contig=None) -> tensor:
        x = self.to_tensor(x)
        if x.type.is_pointer:
            return x    # alignment hints on pointer tiles (Triton's tutorial 08): nothing uses them here
        if not x.dtype.is_int:
            raise SemanticError(f"multiple_of/max_contiguous apply to integer tensors, got {x.dtype}")
        attrs = {}
        for key, v in (("div", div), ("contig", contig)):
            v = unwrap(v)
            if v is None:
                continue
            if isinstance(v, (tuple, list)):        # Triton accepts one value per dimension
                v = unwrap(v[-1])
            v = _const_int(v, key)
            if v < 1:
                raise SemanticError(f"{key} hint must be positive, got {v}")
            attrs[key] = v
        return tensor(self.b.op1("assume", [x.handle], x.type, **attrs))

    # ---- memory -------------------------------------------------------------
    def _pointer(self, ptr, what: str) -> tensor:
        ptr = unwrap(ptr)
        if not isinstance(ptr, tensor) or not ptr.type.is_pointer:
            raise SemanticError(f"{what} needs a pointer (a tensor argument plus offsets), got {ptr!r}")
        return ptr

    def _mask(self, mask, shape) -> tensor | None:
        if mask is None:
            return None
        mask = self.to_tensor(mask)
        if not mask.dtype.is_bool:
            mask = self.compare("ne", mask, 0)
        return mask

    def make_block_ptr(self, base, shape, strides, offsets, block_shape, order) -> BlockPointer:
        return block_pointer.make_block_ptr(self, base, shape, strides, offsets, block_shape, order)

    def advance(self, ptr, offsets) -> BlockPointer:
        return block_pointer.advance(self, ptr, offsets)

    def _no_block_options(self, what: str, boundary_check, padding_option):
        if unwrap(boundary_check) not in (None, ()) or unwrap(padding_option):
            raise SemanticError(f"boundary_check and padding_option apply to {what}s through block pointers "
                                "(sl.make_block_ptr); a tile of pointers takes mask= instead")

    def load(self, ptr, mask=None, other=None, boundary_check=None, padding_option="") -> tensor:
        if isinstance(unwrap(ptr), BlockPointer):
            return block_pointer.load(self, unwrap(ptr), mask, other, boundary_check, padding_option)
        self._no_block_options("load", boundary_check, padding_option)
        ptr = self._pointer(ptr, "load")
        mask = self._mask(unwrap(mask), ptr.shape)
        elem = ptr.dtype.pointee
        shape = ptr.shape
        if mask is not None:
            shape = self.broadcast_shapes(shape, mask.shape)
        other = unwrap(other)
        if other is not None:
            other = self.to_tensor(other, elem if is_number(other) else None)
            if other.dtype != elem:
                other = self.cast(other, elem)
            shape = self.broadcast_shapes(shape, other.shape)
        operands = [self.broadcast_to(ptr, shape).handle]
        if mask is not None:
            operands.append(self.broadcast_to(mask, shape).handle)
            if other is not None:
                operands.append(self.broadcast_to(other, shape).handle)
        elif other is not None:
            raise SemanticError("load's `other` needs a `mask`")
        return tensor(self.b.op1("load", operands, T.TileType(shape, elem)))

    def _stored_value(self, value, elem: T.DType, what: str) -> tensor:
        value = unwrap(value)
        if is_number(value):
            return self.constant(value, elem)
        value = self.to_tensor(value)
        if value.type.is_pointer:
            raise SemanticError(f"{what} of a pointer value; store the data it points to instead")
        if value.dtype != elem:
            value = self.cast(value, elem)   # as Triton: the value converts to the pointee type
        return value

    def store(self, ptr, value, mask=None, boundary_check=None) -> None:
        if isinstance(unwrap(ptr), BlockPointer):
            return block_pointer.store(self, unwrap(ptr), value, mask, boundary_check)
        self._no_block_options("store", boundary_check, None)
        ptr = self._pointer(ptr, "store")
        value = self._stored_value(value, ptr.dtype.pointee, "store")
        mask = self._mask(unwrap(mask), ptr.shape)
        shape = self.broadcast_shapes(ptr.shape, value.shape)
        if mask is not None:
            shape = self.broadcast_shapes(shape, mask.shape)
        if shape != ptr.shape and ptr.shape != ():
            if self.broadcast_shapes(ptr.shape, shape) != ptr.shape:
                raise SemanticError(f"store of shape {list(shape)} through pointers of shape {list(ptr.shape)}")
        operands = [self.broadcast_to(ptr, shape).handle, self.broadcast_to(value, shape).handle]
        if mask is not None:
            operands.append(self.broadcast_to(mask, shape).handle)
        self.b.create("store", operands, [])

    def _no_global_atomic(self, ptr, what: str):
        if ptr.dtype.global_address:
            raise SemanticError(f"{what} through a global-address pointer ({ptr.dtype}, made from an "
                                "integer) is not supported; use atomics on a tensor argument's pointer")
        return ptr

    def _atomic_attrs(self, what: str, sem, scope) -> dict:
        """Triton's `sem=` and `scope=` (None: acq_rel and gpu, as in Triton)."""
        sem, scope = unwrap(sem), unwrap(scope)
        attrs = {}
        if sem is not None:
            if sem not in ATOMIC_SEMS:
                raise SemanticError(f"{what}: sem must be one of {sorted(ATOMIC_SEMS)}, got {sem!r}")
            attrs["sem"] = sem
        if scope is not None:
            if scope not in ATOMIC_SCOPES:
                raise SemanticError(f"{what}: scope must be one of {sorted(ATOMIC_SCOPES)}, got {scope!r}")
            attrs["scope"] = scope
        return attrs

    def atomic(self, kind: str, ptr, value, mask=None, sem=None, scope=None) -> tensor:
        what = f"atomic_{kind}"
        ptr = self._no_global_atomic(self._pointer(ptr, what), what)
        elem = ptr.dtype.pointee
        err = atomic_type_error(kind, elem)
        if err:
            raise SemanticError(err)
        attrs = self._atomic_attrs(what, sem, scope)
        value = self._stored_value(value, elem, what)
        mask = self._mask(unwrap(mask), ptr.shape)
        shape = self.broadcast_shapes(ptr.shape, value.shape)
        if mask is not None:
            shape = self.broadcast_shapes(shape, mask.shape)
        operands = [self.broadcast_to(ptr, shape).handle, self.broadcast_to(value, shape).handle]
        if mask is not None:
            operands.append(self.broadcast_to(mask, shape).handle)
        return tensor(self.b.op1("atomic_rmw", operands, T.TileType(shape, elem), kind=kind, **attrs))

    def atomic_cas(self, ptr, cmp, val, sem=None, scope=None) -> tensor:
        ptr = self._no_global_atomic(self._pointer(ptr, "atomic_cas"), "atomic_cas")
        elem = ptr.dtype.pointee
        err = atomic_type_error("cas", elem)
        if err:
            raise SemanticError(err)
        attrs = self._atomic_attrs("atomic_cas", sem, scope)
        cmp = self._stored_value(cmp, elem, "atomic_cas")
        val = self._stored_value(val, elem, "atomic_cas")
        shape = self.broadcast_shapes(self.broadcast_shapes(ptr.shape, cmp.shape), val.shape)
        operands = [self.broadcast_to(x, shape).handle for x in (ptr, cmp, val)]
        return tensor(self.b.op1("atomic_cas", operands, T.TileType(shape, elem), **attrs))

    def histogram(self, x, num_bins, mask=None) -> tensor:
        """Triton's tl.histogram: bins of width 1 from 0; values outside [0, num_bins) and
        masked-off elements are not counted."""
        x = self.to_tensor(x)
        num_bins = _const_int(num_bins, "histogram's num_bins")
        if len(x.shape) != 1 or x.type.is_pointer or not x.dtype.is_int or x.dtype.is_bool:
            raise SemanticError(f"histogram takes a 1-D integer tensor, got {x.type}")
        if num_bins < 1:
            raise SemanticError(f"histogram needs at least one bin, got {num_bins}")
        operands = [x.handle]
        mask = self._mask(unwrap(mask), x.shape)
        if mask is not None:
            operands.append(self.broadcast_to(mask, x.shape).handle)
        return tensor(self.b.op1("histogram", operands, T.TileType((num_bins,), T.i32), num_bins=num_bins))

    def gather(self, src, index, axis) -> tensor:
        """Triton's tl.gather: out[.., i, ..] = src[.., index[.., i, ..], ..] along `axis`; src and
        index have one rank and equal sizes outside `axis`."""
        src, index = self.to_tensor(src), self.to_tensor(index)
        rank = len(src.shape)
        if rank == 0 or len(index.shape) != rank:
            raise SemanticError(f"gather needs a source and an index of one rank >= 1, got shapes "
                                f"{list(src.shape)} and {list(index.shape)}")
        if not index.dtype.is_int or index.dtype.is_bool or index.type.is_pointer:
            raise SemanticError(f"gather's index must be an integer tensor, got {index.type}")
        if src.type.is_pointer:
            raise SemanticError("gather of pointers; gather the offsets instead")
        axis = self._axis(axis, rank, "gather")
        for d in range(rank):
            if d != axis and src.shape[d] != index.shape[d]:
                raise SemanticError(f"gather: index dim {d} is {index.shape[d]} but the source's is "
                                    f"{src.shape[d]} (only axis {axis} may differ)")
        return tensor(self.b.op1("gather", [src.handle, index.handle], T.TileType(index.shape, src.dtype),
                                 axis=axis))

    def topk(self, x, k, dim=None) -> tensor:
        """Triton's tl.topk: the k largest elements along the last dim, largest first.  A
        descending bitonic sort, then the first k (k and the dim powers of two)."""
        x = self.to_tensor(x)
        rank = len(x.shape)
        if rank == 0:
            raise SemanticError("topk of a scalar")
        axis = rank - 1 if unwrap(dim) is None else self._axis(dim, rank, "topk")
        if axis != rank - 1:
            raise SemanticError(f"topk works along the last dim only (as in Triton), got dim {axis}")
        k, n = _const_int(k, "topk's k"), x.shape[-1]
        if k < 1 or k > n or k & (k - 1):
            raise SemanticError(f"topk needs k a power of two in [1, {n}], got {k}")
        y = self.sort(x, axis, True)
        if k == n:
            return y
        return self.extract(self.reshape(y, x.shape[:-1] + (n // k, k)), rank - 1, 0)

    # ---- reductions ---------------------------------------------------------
    def reduce(self, kind: str, x, axis=None, keep_dims: bool = False) -> tensor:
        x = self.to_tensor(x)
        axis = unwrap(axis)
        if x.shape == ():
            raise SemanticError(f"{kind} of a scalar; it needs a tensor")
        rank = len(x.shape)   # before flattening: keep_dims of a full reduction keeps every dim
        if axis is None:
            if len(x.shape) > 1:
                x = self.reshape(x, (x.numel,))
            axis = 0
            full = True
        else:
            full = False
            axis = _const_int(axis, f"{kind}'s axis")
            if axis < 0:
                axis += len(x.shape)
            if not 0 <= axis < len(x.shape):
                raise SemanticError(f"axis {axis} out of range for shape {list(x.shape)}")
        elem = x.dtype
        if kind == "sum" and (elem.is_bool or (elem.is_int and elem.bits < 32)):
            x, elem = self.cast(x, T.i32), T.i32
        out_shape = x.shape[:axis] + x.shape[axis + 1:]
        out_elem = T.i32 if kind in ("argmax", "argmin") else elem
        r = tensor(self.b.op1("reduce", [x.handle], T.TileType(out_shape, out_elem), kind=kind, axis=axis))
        if keep_dims:
            if full:
                for _ in range(rank):
                    r = self.expand_dims(r, 0)
            else:
                r = self.expand_dims(r, axis)
        return r

    # ---- reductions and scans with a user combine function ---------------------
    def _call_combine(self, fn, args):
        caller = getattr(self, "jit_caller", None)
        if caller is None or not callable(fn):
            raise SemanticError("combine_fn must be a @jit function")
        out = caller(fn, list(args))
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def _tuple_input(self, input, what: str):
        single = not isinstance(input, (tuple, list))
        xs = [self.to_tensor(x) for x in ((input,) if single else input)]
        shape = xs[0].shape
        if not shape or any(x.shape != shape for x in xs):
            raise SemanticError(f"{what} needs tensors of one shape, got {[list(x.shape) for x in xs]}")
        return xs, single

    def _axis(self, axis, rank: int, what: str) -> int:
        axis = _const_int(axis, f"{what}'s axis")
        if axis < 0:
            axis += rank
        if not 0 <= axis < rank:
            raise SemanticError(f"{what}: axis {axis} out of range for rank {rank}")
        return axis

    def associative_scan(self, input, axis, combine_fn, reverse=False):
        """Inclusive scan with `combine_fn` (Hillis-Steele: log2(n) shifted combines); the
        combine sees (earlier, later) operands, so it may be non-commutative."""
        xs, single = self._tuple_input(input, "associative_scan")
        axis = self._axis(axis, len(xs[0].shape), "associative_scan")
        reverse = bool(unwrap(reverse))
        shape, n = xs[0].shape, xs[0].shape[axis]
        pos = tensor(self.b.op1("arange", [], T.TileType((n,), T.i32), start=0, end=n))
        for _ in range(len(shape) - axis - 1):
            pos = self.expand_dims(pos, len(pos.shape))
        d = 1
        while d < n:
            attrs = {"axis": axis, "d": d, **({"reverse": True} if reverse else {})}
            shifted = [tensor(self.b.op1("shift", [x.handle], x.type, **attrs)) for x in xs]
            comb = self._call_combine(combine_fn, shifted + xs)
            if len(comb) != len(xs):
                raise SemanticError(f"combine_fn returned {len(comb)} values for {len(xs)} inputs")
            has = self.compare("lt", pos, n - d) if reverse else self.compare("ge", pos, d)
            xs = [self.where(has, c, x) for c, x in zip(comb, xs)]
            d *= 2
        return xs[0] if single else tuple(xs)

    def reduce_with(self, input, axis, combine_fn, keep_dims=False):
        """tl.reduce with a combine function: a tree of adjacent pairs, log2(n) combines."""
        xs, single = self._tuple_input(input, "reduce")
        if unwrap(axis) is None:
            xs = [self.reshape(x, (x.numel,)) for x in xs]
            axis = 0
        rank = len(xs[0].shape)
        axis = self._axis(axis, rank, "reduce")
        n = xs[0].shape[axis]
        if n & (n - 1):
            raise SemanticError(f"reduce with a combine_fn needs a power-of-two axis, got {n}")
        while n > 1:
            shape = xs[0].shape
            pairs = shape[:axis] + (n // 2, 2) + shape[axis + 1:]
            rs = [self.reshape(x, pairs) for x in xs]
            a = [self.extract(r, axis + 1, 0) for r in rs]
            b = [self.extract(r, axis + 1, 1) for r in rs]
            xs = list(self._call_combine(combine_fn, a + b))
            n //= 2
        xs = [self.reshape(x, x.shape[:axis] + x.shape[axis + 1:]) for x in xs]
        if unwrap(keep_dims):
            xs = [self.expand_dims(x, axis) for x in xs]
        return xs[0] if single else tuple(xs)

    def sort(self, x, dim=None, descending=False) -> tensor:
        """Bitonic sorting network along `dim` (default the last), composed from moves, min/max
        and selects: log2(n) * (log2(n) + 1) / 2 compare-exchange stages, n a power of two."""
        x = self.to_tensor(x)
        rank = len(x.shape)
        if rank == 0:
            raise SemanticError("sort of a scalar")
        axis = rank - 1 if unwrap(dim) is None else self._axis(dim, rank, "sort")
        n = x.shape[axis]
        if n & (n - 1):
            raise SemanticError(f"sort needs a power-of-two dimension, got {n}")
        desc = bool(unwrap(descending))
        shape = x.shape
        idx = tensor(self.b.op1("arange", [], T.TileType((n,), T.i32), start=0, end=n))
        for _ in range(rank - axis - 1):
            idx = self.expand_dims(idx, len(idx.shape))
        idx = self.broadcast_to(idx, shape)
        k = 2
        while k <= n:
            j = k // 2
            while j >= 1:
                split = shape[:axis] + (n // (2 * j), 2, j) + shape[axis + 1:]
                xr, ir = self.reshape(x, split), self.reshape(idx, split)
                left, right = self.extract(xr, axis + 1, 0), self.extract(xr, axis + 1, 1)
                i_left = self.extract(ir, axis + 1, 0)
                # blocks of k alternate direction; the last merge (k == n) runs one way only
                up = self.compare("eq", self.binary("and", i_left, k), 0)
                if desc:
                    up = self.unary("not", up)
                lo, hi = self.binary("minimum", left, right), self.binary("maximum", left, right)
                new_l, new_r = self.where(up, lo, hi), self.where(up, hi, lo)
                joined = self.join(new_l, new_r)                  # [..., n/2j, j, ..., 2]
                jr = len(joined.shape)
                order = list(range(axis + 1)) + [jr - 1] + list(range(axis + 1, jr - 1))
                x = self.reshape(self.permute(joined, order), shape)
                j //= 2
            k *= 2
        return x

    def debug_barrier(self) -> None:
        self.b.create("barrier", [], [])

    def device_assert(self, cond, msg="") -> None:
        cond = self.to_tensor(cond)
        if not cond.dtype.is_bool:
            cond = self.compare("ne", cond, 0)
        self.b.create("assert", [cond.handle], [], {"msg": str(unwrap(msg))})

    def device_print(self, prefix, *args, hex=False) -> None:
        prefix = unwrap(prefix)
        if not isinstance(prefix, str):
            raise SemanticError(f"device_print's prefix must be a string, got {prefix!r}")
        vals = [self.to_tensor(a) for a in args]
        attrs = {"prefix": prefix, **({"hex": True} if unwrap(hex) else {})}
        self.b.create("print", [v.handle for v in vals], [], attrs)

    def scan(self, kind: str, x, axis=0, reverse=False, dtype=None) -> tensor:
        """cumsum / cumprod (and max/min scans): Triton's promotion of small ints to int32."""
        x = self.to_tensor(x)
        if x.shape == ():
            raise SemanticError(f"cum{kind} of a scalar; it needs a tensor")
        if x.type.is_pointer:
            raise SemanticError("a scan of pointers")
        axis = _const_int(axis, "the scan's axis")
        if axis < 0:
            axis += len(x.shape)
        if not 0 <= axis < len(x.shape):
            raise SemanticError(f"axis {axis} out of range for shape {list(x.shape)}")
        dtype = unwrap(dtype)
        if dtype is not None:
            x = self.cast(x, dtype)
        elif kind in ("sum", "prod") and (x.dtype.is_bool or (x.dtype.is_int and x.dtype.bits < 32)):
            x = self.cast(x, T.i32)
        attrs = {"kind": kind, "axis": axis}
        if unwrap(reverse):
            attrs["reverse"] = True
        return tensor(self.b.op1("scan", [x.handle], x.type, **attrs))

    def dot(self, a, b, acc=None, out_dtype=None) -> tensor:
        a, b = self.to_tensor(a), self.to_tensor(b)
        if len(a.shape) == 3 and len(b.shape) == 3:
            return self._batched_dot(a, b, acc, out_dtype)
        if len(a.shape) != 2 or len(b.shape) != 2:
            raise SemanticError(f"dot needs two 2-D or two 3-D tensors, got shapes {list(a.shape)} "
                                f"and {list(b.shape)}")
        if a.shape[1] != b.shape[0]:
            raise SemanticError(f"dot shapes {list(a.shape)} and {list(b.shape)} do not chain (K differs)")
        if a.dtype != b.dtype:
            dt = promote(a.dtype, b.dtype)
            a, b = self.cast(a, dt), self.cast(b, dt)
        if a.dtype.is_int and a.dtype.bits == 64:
            raise SemanticError(f"dot of {_lang_name(a.dtype)} values is not supported (Triton's dot takes "
                                "8-bit integers); convert with .to(tl.int32) or .to(tl.float64)")
        out = unwrap(out_dtype)
        if a.dtype.name == "f64" and not isinstance(unwrap(acc), tensor):
            out = T.f64          # as Triton: a float64 dot accumulates and returns float64
        if out is None:
            out = acc.dtype if isinstance(unwrap(acc), tensor) else (T.f32 if a.dtype.is_float else T.i32)
        shape = (a.shape[0], b.shape[1])
        if acc is None:
            acc = self.constant(0, out, shape)
        else:
            acc = self.to_tensor(unwrap(acc), out)
            if acc.dtype != out:
                acc = self.cast(acc, out)
            acc = self.broadcast_to(acc, shape)
        return tensor(self.b.op1("dot", [a.handle, b.handle, acc.handle], T.TileType(shape, out)))

    def _batched_dot(self, a, b, acc, out_dtype) -> tensor:
        """[B, M, K] x [B, K, N] (+ [B, M, N]): one 2-D dot per batch index, restacked along
        dim 0 (so every dot path, matrix cores included, serves batched products too)."""
        if a.shape[0] != b.shape[0]:
            raise SemanticError(f"batched dot shapes {list(a.shape)} and {list(b.shape)} differ in "
                                "the batch dimension")
        acc = unwrap(acc)
        if acc is not None:
            acc = self.broadcast_to(self.to_tensor(acc), (a.shape[0], a.shape[1], b.shape[2]))
        parts = [self.dot(self.extract(a, 0, i), self.extract(b, 0, i),
                          None if acc is None else self.extract(acc, 0, i), out_dtype)
                 for i in range(a.shape[0])]
        return self._stack0(parts)

    def _stack0(self, parts: list) -> tensor:
        """Stack equal-shaped tiles along a new dim 0: a balanced tree of cat, so the number
        of data moves grows as log2(len(parts)), not linearly."""
        if len(parts) == 1:
            return self.expand_dims(parts[0], 0)
        if len(parts) & (len(parts) - 1):             # not a power of two: one select per part
            shape = (len(parts),) + tuple(parts[0].shape)
            idx = tensor(self.b.op1("arange", [], T.TileType((len(parts),), T.i32), start=0, end=len(parts)))
            while len(idx.shape) < len(shape):
                idx = self.expand_dims(idx, len(idx.shape))
            idx = self.broadcast_to(idx, shape)
            out = self.broadcast_to(self.expand_dims(parts[0], 0), shape)
            for i, p in enumerate(parts[1:], start=1):
                out = self.where(self.compare("eq", idx, i), self.broadcast_to(self.expand_dims(p, 0), shape), out)
            return out
        half = len(parts) // 2
        return self.cat(self._stack0(parts[:half]), self._stack0(parts[half:]))


def _lang_name(dt: T.DType) -> str:
    return {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "f64": "float64", "i64": "int64", "u64": "uint64",
            "i32": "int32", "u32": "uint32", "i16": "int16", "u16": "uint16", "i8": "int8",
            "u8": "uint8", "i1": "int1"}[dt.name]
