"""Event streams: read, validate and write ``x, y, t, p`` events without running untrusted code.

An event camera reports, per pixel, a change of log intensity: ``x``, ``y`` (pixel column and
row, 0-based, inside the sensor), ``t`` (microseconds) and ``p`` (polarity: 1 brighter, 0
darker). DSEC (Gehrig et al., RA-L 2021) records 640 x 480 sensors; its files are HDF5
(``events/x|y|t|p``, ``t_offset``, ``ms_to_idx``). The EventGPT release ships ``.npy`` files
that hold a *pickled* dict ``{"x", "y", "t", "p", ...}``. Unpickling can run arbitrary code, so
those files are read with :class:`RestrictedUnpickler`, which builds numpy arrays, dtypes and
plain containers and refuses everything else before it is called, as well as crafted states
that would make numpy read outside an array. Any failure while reading a file, whatever raised
it, ends in an :class:`~pytest_egbench.data.errors.EventFileError` naming the file.

Supported files (:func:`read_events` picks by suffix):

* ``.npy`` -- EventGPT's pickled dict (read safely), or a structured array with fields x, y, t, p.
* ``.npz`` -- arrays ``x``, ``y``, ``t``, ``p`` (optional ``sensor_size`` = [width, height],
  ``t_offset``), or one structured array ``events``. Pickled members are refused. This is the
  layout :func:`write_events_npz` writes: the safe format of datasets built by this package.
* ``.h5`` / ``.hdf5`` -- DSEC's layout, through the optional dependency h5py
  (``pip install 'pytest-egbench[hdf5]'``).

Every reader ends in :func:`events_from_arrays`, which validates: equal lengths, whole-number
coordinates inside the sensor, polarity 0/1, timestamps non-decreasing (or sorted on request).
Timestamps are widened to int64 *before* any arithmetic: DSEC's sample clips store ``t`` as
uint16, where ``t[i+1] - t[i]`` would wrap around.
"""

from __future__ import annotations

import ast
import io
import math
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .errors import EventFileError, MissingDependencyError


class SensorSize(NamedTuple):
    """Sensor size in pixels. Event frames are ``[height, width, 3]``."""

    width: int
    height: int


#: DSEC's event cameras (and EventGPT's frames): 640 x 480.
DSEC_SENSOR = SensorSize(640, 480)

#: Names of the four event fields, in the order EventGPT's dicts use them.
EVENT_FIELDS: tuple[str, ...] = ("x", "y", "t", "p")


@dataclass(frozen=True, eq=False)
class EventStream:
    """A validated event stream of ``n`` events.

    ``x``, ``y``: ``[n]`` uint16 pixel column / row, inside ``sensor``. ``t``: ``[n]`` int64
    microseconds, non-decreasing, relative to ``t_offset_us`` (DSEC's ``t_offset``; 0 when the file
    has none). ``p``: ``[n]`` uint8 polarity, 1 = brighter (ON), 0 = darker (OFF). ``source``: the
    file it came from, if any. ``metadata``: other plain values found beside the events.
    Build one with :func:`events_from_arrays` or a reader, not directly.
    """

    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    p: np.ndarray
    sensor: SensorSize = DSEC_SENSOR
    t_offset_us: int = 0
    source: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.t.shape[0])

    @property
    def duration_us(self) -> int:
        """``t[-1] - t[0]`` in microseconds (0 for fewer than two events)."""
        return int(self.t[-1] - self.t[0]) if len(self) > 1 else 0

    def time_slice(self, start_us: int, end_us: int) -> EventStream:
        """Events with ``start_us <= t < end_us`` (same clock as ``t``), as a new stream (views)."""
        lo, hi = np.searchsorted(self.t, [start_us, end_us], side="left")
        return EventStream(self.x[lo:hi], self.y[lo:hi], self.t[lo:hi], self.p[lo:hi], self.sensor, self.t_offset_us, self.source, dict(self.metadata))

    def as_dict(self) -> dict[str, np.ndarray]:
        """``{"x", "y", "t", "p"}``, the layout EventGPT's code indexes."""
        return {"x": self.x, "y": self.y, "t": self.t, "p": self.p}


# --------------------------------------------------------------------------- validation


def _parse_sensor(value: Any, source: Path | None) -> SensorSize:
    try:
        width, height = (int(v) for v in np.asarray(value).ravel().tolist())
    except (TypeError, ValueError):
        raise EventFileError(source, f"sensor size {value!r} is not [width, height]") from None
    if not (0 < width <= 65536 and 0 < height <= 65536):
        raise EventFileError(source, f"sensor size {width} x {height} is outside 1..65536 pixels")
    return SensorSize(width, height)


def _whole_numbers(name: str, values: Any, source: Path | None) -> np.ndarray:
    """``values`` as a 1-D integer (or bool) array; floats only when every value is whole."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise EventFileError(source, f"field {name!r} has shape {arr.shape}, expected one dimension [n]")
    kind = arr.dtype.kind
    if kind in "biu":
        return arr
    if kind == "f":
        if arr.size and not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
            bad = arr[~(np.isfinite(arr) & (arr == np.round(arr)))][0]
            unit = " (timestamps must be whole microseconds, not seconds)" if name == "t" else ""
            raise EventFileError(source, f"field {name!r} holds non-integer values such as {bad!r}{unit}")
        return arr.astype(np.int64)
    raise EventFileError(source, f"field {name!r} has dtype {arr.dtype}, expected integers")


def events_from_arrays(
    x: Any,
    y: Any,
    t: Any,
    p: Any,
    *,
    sensor: SensorSize | tuple[int, int] = DSEC_SENSOR,
    sort: bool = False,
    allow_empty: bool = False,
    t_offset_us: int = 0,
    source: str | Path | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> EventStream:
    """Validate four ``[n]`` arrays and return an :class:`EventStream`.

    ``sensor`` is (width, height) in pixels. Checks, in order: one dimension each and equal
    lengths; integer values (whole-valued floats are accepted); ``0 <= x < width``,
    ``0 <= y < height``; polarity in {0, 1}; timestamps non-decreasing after widening to int64.
    Unsorted timestamps are an error unless ``sort=True``, which reorders all four fields with a
    stable sort (events with equal ``t`` keep their order). ``allow_empty=False`` refuses n = 0.

    Raises :class:`~pytest_egbench.data.errors.EventFileError` naming ``source`` and the problem.
    """
    src = None if source is None else Path(source)
    sensor = _parse_sensor(sensor, src)
    fields = {name: _whole_numbers(name, arr, src) for name, arr in zip(EVENT_FIELDS, (x, y, t, p))}
    lengths = {name: int(arr.shape[0]) for name, arr in fields.items()}
    if len(set(lengths.values())) != 1:
        raise EventFileError(src, f"fields have different lengths: {', '.join(f'{k}={v}' for k, v in lengths.items())}")
    n = lengths["t"]
    if n == 0 and not allow_empty:
        raise EventFileError(src, "holds no events")
    for name, limit in (("x", sensor.width), ("y", sensor.height)):
        arr = fields[name]
        if n and (int(arr.min()) < 0 or int(arr.max()) >= limit):
            bad = int(np.flatnonzero((arr < 0) | (arr >= limit))[0])
            raise EventFileError(src, f"event {bad} has {name}={int(arr[bad])}, outside the {sensor.width} x {sensor.height} sensor (0 <= {name} < {limit})")
    pol = fields["p"]
    if n and (int(pol.min()) < 0 or int(pol.max()) > 1):
        bad = int(np.flatnonzero((pol < 0) | (pol > 1))[0])
        raise EventFileError(src, f"event {bad} has polarity {int(pol[bad])}; polarity must be 0 or 1 (for -1/1 data use p = (p > 0))")
    ts = fields["t"]
    if ts.dtype == np.uint64 and n and int(ts.max()) > np.iinfo(np.int64).max:
        raise EventFileError(src, "timestamps exceed the int64 range")
    t64 = ts.astype(np.int64)  # widen first: uint16 differences would wrap
    xs, ys, ps = fields["x"].astype(np.uint16), fields["y"].astype(np.uint16), pol.astype(np.uint8)
    if n > 1:
        backwards = t64[1:] < t64[:-1]
        if backwards.any():
            if not sort:
                i = int(np.flatnonzero(backwards)[0])
                wrap = " (uint16 timestamps may have wrapped around 65535 us)" if ts.dtype == np.uint16 else ""
                raise EventFileError(src, f"timestamps are not sorted: t[{i}]={int(t64[i])} > t[{i + 1}]={int(t64[i + 1])}{wrap}; pass sort=True to sort them")
            order = np.argsort(t64, kind="stable")
            t64, xs, ys, ps = t64[order], xs[order], ys[order], ps[order]
    return EventStream(xs, ys, t64, ps, sensor, int(t_offset_us), src, dict(metadata or {}))


# --------------------------------------------------------------------------- safe unpickling

#: (module, name) pairs a pickled event file may refer to: how numpy pickles arrays, dtypes and
#: scalars (numpy 1.x and 2.x module paths), and plain containers.
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # pickle protocol 5
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # bytes in protocol 2 pickles; encode(str, "latin1") only
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "bytearray"),
        ("builtins", "complex"),
        ("collections", "OrderedDict"),
    }
)
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class RestrictedUnpickler(pickle._Unpickler):  # the Python unpickler: its BUILD can be checked
    """An unpickler that builds only numpy arrays, dtypes, numpy scalars and plain containers.

    ``find_class`` is the only way a pickle reaches a Python callable; here it returns the callable
    only for the pairs in ``_ALLOWED_GLOBALS`` and raises :class:`pickle.UnpicklingError`
    otherwise, *before* anything is called (so ``os.system``, ``builtins.eval``, ``subprocess``
    ... are never reached). Persistent ids are refused too. Object arrays inside the pickle are
    rebuilt by the same unpickler, so their elements obey the same rule.

    Allowed callables are also held to the calls numpy's own pickles make: ``_reconstruct``
    makes an empty ndarray only, ``_codecs.encode`` encodes a str as latin1 only. And the state a
    pickle gives an object (``BUILD``) is checked before numpy sees it, because numpy's
    ``__setstate__`` trusts it: a dtype state must be the one numpy writes for a dtype its
    constructor accepts (a crafted field offset beyond the item size reads memory outside the
    array, far enough it segfaults); an array state's data must fill its shape exactly (an object
    array given a short list segfaults, numpy 2.4); no other object may receive a state. This is
    the pure-Python unpickler (``pickle._Unpickler``) because the C one offers no hook on
    ``BUILD``; event pickles hold few, large objects, so it is not slower in practice (the 132,268
    event DSEC clip reads in about 12 ms).
    """

    dispatch: ClassVar[dict[int, Callable[[Any], None]]] = dict(pickle._Unpickler.dispatch)
    stack: list[Any]  # the pure-Python unpickler's working stack (undocumented, so absent from typeshed)

    def find_class(self, module: str, name: str) -> Any:
        key = (_PY2_MODULES.get(module, module), name)
        if key not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: only numpy arrays, dtypes and plain containers may be unpickled")
        found = super().find_class(*key)
        return _NARROWED[key[1]](found) if key[1] in _NARROWED else found

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused persistent id: only numpy arrays, dtypes and plain containers may be unpickled")

    def load_build(self) -> None:
        # numpy pickles give state (BUILD) to arrays and dtypes only; their __setstate__ trusts it.
        if len(self.stack) < 2:
            raise pickle.UnpicklingError("BUILD without an object")
        inst, state = self.stack[-2], self.stack[-1]
        if type(inst) is np.ndarray:
            _check_array_state(state)
        elif isinstance(inst, np.dtype):
            _check_dtype_state(inst, state)
        else:
            raise pickle.UnpicklingError(f"refused state for a {type(inst).__name__}: numpy pickles set the state of arrays and dtypes only")
        super().load_build()  # type: ignore[misc]  # typeshed omits the undocumented _Unpickler.load_build

    dispatch[pickle.BUILD[0]] = load_build


def _canonical_dtype_state(dtype: np.dtype, state: Any) -> Any:
    """The state numpy writes for the dtype that ``state`` describes, built through numpy's
    constructor (which checks offsets and sizes); ``None`` when it describes none."""
    subarray, names, fields, itemsize = state[2], state[3], state[4], state[5]
    if dtype.kind in "mM" and len(state) == 9 and subarray is None and names is None:
        unit, count = state[8][1][0], int(state[8][1][1])  # datetime metadata: (b"us", 1, 1, 1)
        return np.dtype(f"{dtype.char}8[{count}{unit.decode('ascii')}]" if unit != b"generic" else f"{dtype.char}8").__reduce__()[2]
    if len(state) != 8:
        return None
    if names is None and fields is None and subarray is None:
        return dtype.__reduce__()[2]  # a plain dtype: its state follows from the constructor's
    if subarray is not None and names is None:
        base, shape = subarray
        return np.dtype((base, shape)).__reduce__()[2] if isinstance(base, np.dtype) else None
    if subarray is not None or not isinstance(names, tuple) or not isinstance(fields, dict) or not all(n in fields for n in names):
        return None
    field_names: list[str] = []
    formats: list[np.dtype] = []
    offsets: list[int] = []
    titles: list[Any] = []
    for name in names:
        entry = fields[name]  # (dtype, offset) or (dtype, offset, title); titles are keys too
        if not isinstance(entry, tuple) or len(entry) not in (2, 3) or not isinstance(entry[0], np.dtype):
            return None
        field_names.append(name)
        formats.append(entry[0])
        offsets.append(int(entry[1]))
        titles.append(entry[2] if len(entry) == 3 else None)
    align = bool(state[7] & 0x80) if isinstance(state[7], int) else False
    return np.dtype({"names": field_names, "formats": formats, "offsets": offsets, "titles": titles, "itemsize": int(itemsize)}, align=align).__reduce__()[2]


def _empty_array_only(reconstruct: Any) -> Any:
    """numpy's ``_reconstruct``, limited to the call numpy pickles make: an empty ndarray."""

    def checked(subtype: Any, shape: Any, dtype: Any) -> Any:
        if subtype is not np.ndarray or shape != (0,):
            raise pickle.UnpicklingError(f"refused _reconstruct({_short(subtype)}, {_short(shape)}, ...): numpy pickles start every array empty")
        return reconstruct(subtype, shape, dtype)

    return checked


def _latin1_only(encode: Any) -> Any:
    """``_codecs.encode``, limited to the call protocol-2 pickles make: ``encode(str, "latin1")``."""

    def checked(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> Any:
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
            raise pickle.UnpicklingError(f"refused _codecs.encode(..., {_short(encoding)}): protocol 2 pickles encode str as latin1 only")
        return encode(text, encoding)

    return checked


_NARROWED = {"_reconstruct": _empty_array_only, "encode": _latin1_only}


def _check_array_state(state: Any) -> None:
    """Refuse an array state ``(version, shape, dtype, fortran, data)`` whose data does not fill
    the shape exactly: numpy's ``ndarray.__setstate__`` reads an object array's elements from a
    list without checking its length (a short list crashes the process)."""
    problem = None
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        problem = "not (version, shape, dtype, fortran, data)"
    else:
        shape, dtype, data = state[-4], state[-3], state[-1]
        if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
            problem = f"shape {_short(shape)} is not a tuple of sizes"
        elif not isinstance(dtype, np.dtype):
            problem = f"dtype {_short(dtype)} is not a dtype"
        else:
            size = math.prod(shape)
            if dtype.hasobject:
                if not isinstance(data, list) or len(data) != size:
                    problem = f"an object array of {size} element(s) needs a list of as many, got {type(data).__name__}" + (
                        f" of {len(data)}" if isinstance(data, list) else ""
                    )
            elif not isinstance(data, (bytes, bytearray, str)) or len(data) != size * dtype.itemsize:
                problem = f"{size} element(s) of {dtype.itemsize} byte(s) need {size * dtype.itemsize} bytes of data, got {type(data).__name__}" + (
                    f" of {len(data)}" if isinstance(data, (bytes, bytearray, str)) else ""
                )
    if problem:
        raise pickle.UnpicklingError(f"refused array state: {problem}")


def _check_dtype_state(dtype: np.dtype, state: Any) -> None:
    """Refuse a dtype state that numpy would not write itself (see :class:`RestrictedUnpickler`)."""
    try:
        ok = isinstance(state, tuple) and len(state) in (8, 9) and state[1] in ("<", ">", "|", "=")
        canonical = _canonical_dtype_state(dtype, state) if ok else None
        # Byte order may differ from the constructor's native order ('>f8' pickles as 'f8' + '>').
        ok = (
            canonical is not None
            and state[0] == canonical[0]
            and state[2:] == canonical[2:]
            and (state[1] == canonical[1] or (canonical[1] != "|" and state[1] != "|"))
        )
    except Exception:  # noqa: BLE001 -- a state numpy cannot even compare is not numpy's
        ok = False
    if not ok:
        raise pickle.UnpicklingError(f"refused dtype state {_short(state)}: only the states numpy writes for valid dtypes are accepted")


def _short(value: Any, limit: int = 120) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def safe_unpickle(data: bytes, *, source: str | Path | None = None) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`.

    Raises :class:`EventFileError` naming ``source`` for a refused global or dtype state, and for
    any other failure while unpickling: a broken or truncated pickle, or an allowed numpy
    function that raises on crafted arguments (``RuntimeError``, ``SystemError``, ``TypeError``
    ...). ``KeyboardInterrupt`` and ``SystemExit`` pass through.
    """
    src = None if source is None else Path(source)
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        raise EventFileError(src, f"unsafe or invalid pickle: {exc}") from None
    except RecursionError as exc:
        raise EventFileError(src, f"corrupt or crafted pickle (nested too deeply: {exc})") from None
    except Exception as exc:  # noqa: BLE001 -- whatever numpy raises on crafted arguments
        raise EventFileError(src, f"truncated, corrupt or crafted pickle ({type(exc).__name__}: {_short(str(exc), 200)})") from None


# --------------------------------------------------------------------------- readers

_NPY_MAGIC = b"\x93NUMPY"


def _npy_header(raw: bytes, src: Path) -> tuple[dict[str, Any], int]:
    """The ``.npy`` header dict and the offset of the data after it (format versions 1-3)."""
    if not raw.startswith(_NPY_MAGIC) or len(raw) < 10:
        raise EventFileError(src, "not a .npy file (no NUMPY magic)")
    major = raw[6]
    if major == 1:
        hlen, start = int.from_bytes(raw[8:10], "little"), 10
    elif major in (2, 3):
        hlen, start = int.from_bytes(raw[8:12], "little"), 12
    else:
        raise EventFileError(src, f"unknown .npy format version {major}")
    text = raw[start : start + hlen]
    if len(text) < hlen:
        raise EventFileError(src, "truncated .npy header")
    try:
        header = ast.literal_eval(text.decode("utf-8" if major == 3 else "latin1"))
    except (ValueError, SyntaxError, UnicodeDecodeError):
        raise EventFileError(src, "unreadable .npy header") from None
    if not isinstance(header, dict) or "descr" not in header:
        raise EventFileError(src, "unreadable .npy header")
    return header, start + hlen


def _fields_from_mapping(obj: Mapping[str, Any], src: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    missing = [k for k in EVENT_FIELDS if k not in obj]
    if missing:
        raise EventFileError(src, f"missing event field(s) {', '.join(missing)}; found {', '.join(map(str, obj)) or 'nothing'}")
    for k in EVENT_FIELDS:
        if not isinstance(obj[k], np.ndarray) or obj[k].dtype == object:
            raise EventFileError(src, f"field {k!r} is {type(obj[k]).__name__}, not a numeric array")
    meta = {k: v for k, v in obj.items() if k not in EVENT_FIELDS}
    return {k: obj[k] for k in EVENT_FIELDS}, meta


def _fields_from_structured(arr: np.ndarray, src: Path) -> dict[str, Any]:
    names = arr.dtype.names or ()
    missing = [k for k in EVENT_FIELDS if k not in names]
    if missing:
        raise EventFileError(src, f"structured array lacks field(s) {', '.join(missing)}; has {', '.join(names) or 'none'}")
    flat = arr.reshape(-1)
    return {k: flat[k] for k in EVENT_FIELDS}


def _sensor_from_meta(meta: Mapping[str, Any], default: SensorSize, src: Path) -> SensorSize:
    if "sensor_size" in meta:
        return _parse_sensor(meta["sensor_size"], src)
    if "width" in meta and "height" in meta:
        return _parse_sensor((meta["width"], meta["height"]), src)
    return default


def _read_npy(src: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    raw = src.read_bytes()
    header, offset = _npy_header(raw, src)
    if header["descr"] in ("|O", "O", "object"):
        obj = safe_unpickle(raw[offset:], source=src)
        if isinstance(obj, np.ndarray) and obj.dtype == object and obj.size == 1:
            obj = obj.reshape(()).item()
        if isinstance(obj, Mapping):
            return _fields_from_mapping(obj, src)
        raise EventFileError(src, f"pickled {type(obj).__name__} is not a dict of event fields x, y, t, p")
    try:
        arr = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise EventFileError(src, f"truncated or corrupt .npy ({exc})") from None
    if arr.dtype.names:
        return _fields_from_structured(arr, src), {}
    raise EventFileError(
        src, f"holds a plain {arr.dtype} array of shape {arr.shape}: the column order is ambiguous; save a dict or a structured array with fields x, y, t, p"
    )


def _read_npz(src: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    import zipfile

    try:
        with np.load(src, allow_pickle=False) as npz:
            members = {}
            for name in npz.files:
                try:
                    members[name] = npz[name]
                except ValueError as exc:  # an object array: needs pickle
                    raise EventFileError(src, f"member {name!r} holds pickled objects, which are refused ({exc})") from None
    except EventFileError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as exc:
        raise EventFileError(src, f"truncated or corrupt .npz ({type(exc).__name__}: {exc})") from None
    if "events" in members and members["events"].dtype.names:
        meta = {k: v for k, v in members.items() if k != "events"}
        return _fields_from_structured(members["events"], src), meta
    return _fields_from_mapping(members, src)


def _h5py(src: Path) -> Any:
    try:
        import h5py
    except ImportError:
        raise MissingDependencyError(f"{src}: reading DSEC HDF5 event files needs h5py: pip install 'pytest-egbench[hdf5]'") from None
    return h5py


def read_dsec_h5(
    path: str | Path,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    sensor: SensorSize | tuple[int, int] | None = None,
    sort: bool = False,
) -> EventStream:
    """Read DSEC's HDF5 layout: ``events/x``, ``events/y``, ``events/t`` (us, relative to
    ``t_offset``), ``events/p``, scalar ``t_offset`` (us) and ``ms_to_idx`` (``ms_to_idx[i]`` =
    index of the first event with ``t >= 1000 i``). See DSEC's ``scripts/utils/eventslicer.py``.

    ``start_ms`` / ``end_ms`` read only the events of ``[start_ms, end_ms)`` ms (relative ``t``),
    using ``ms_to_idx`` when present so that a long recording is not read whole. Returned ``t`` is
    relative, with ``t_offset_us`` set from the file. Needs h5py
    (:class:`~pytest_egbench.data.errors.MissingDependencyError` otherwise); raises
    :class:`EventFileError` for a missing dataset, an inconsistent ``ms_to_idx`` or invalid events.
    """
    src = Path(path)
    h5py = _h5py(src)
    try:
        with h5py.File(src, "r") as f:
            if "events" not in f:
                raise EventFileError(src, "no 'events' group (expected DSEC's events/x|y|t|p)")
            group = f["events"]
            missing = [k for k in EVENT_FIELDS if k not in group]
            if missing:
                raise EventFileError(src, f"events group lacks dataset(s) {', '.join(missing)}")
            n = int(group["t"].shape[0])
            lo, hi = 0, n
            if start_ms is not None or end_ms is not None:
                lo, hi = _dsec_window(f, group, n, start_ms, end_ms, src)
            fields = {k: group[k][lo:hi] for k in EVENT_FIELDS}
            t_offset = int(np.asarray(f["t_offset"][()]).item()) if "t_offset" in f else 0
            meta: dict[str, Any] = {"dsec_t_offset_us": t_offset} if "t_offset" in f else {}
    except EventFileError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise EventFileError(src, f"truncated or corrupt HDF5 file ({exc})") from None
    return events_from_arrays(**fields, sensor=sensor or DSEC_SENSOR, sort=sort, t_offset_us=t_offset, source=src, metadata=meta)


def _dsec_window(f: Any, group: Any, n: int, start_ms: int | None, end_ms: int | None, src: Path) -> tuple[int, int]:
    if "ms_to_idx" in f:
        ms_to_idx = np.asarray(f["ms_to_idx"][()], dtype=np.int64)
        if ms_to_idx.ndim != 1 or (ms_to_idx.size and (ms_to_idx.min() < 0 or ms_to_idx.max() > n or np.any(np.diff(ms_to_idx) < 0))):
            raise EventFileError(src, f"ms_to_idx is inconsistent with {n} events (must be non-decreasing indices in 0..{n})")

        def index(ms: int | None, default: int) -> int:
            if ms is None:
                return default
            return int(ms_to_idx[ms]) if 0 <= ms < ms_to_idx.size else (0 if ms < 0 else n)

        return index(start_ms, 0), index(end_ms, n)
    t = np.asarray(group["t"][()], dtype=np.int64)
    lo = 0 if start_ms is None else int(np.searchsorted(t, start_ms * 1000, side="left"))
    hi = n if end_ms is None else int(np.searchsorted(t, end_ms * 1000, side="left"))
    return lo, hi


#: File suffixes :func:`read_events` knows.
EVENT_SUFFIXES: tuple[str, ...] = (".npy", ".npz", ".h5", ".hdf5")


def read_events(path: str | Path, *, sensor: SensorSize | tuple[int, int] | None = None, sort: bool = False) -> EventStream:
    """Read and validate an event file (``.npy``, ``.npz``, ``.h5``/``.hdf5``; see module docs).

    ``sensor`` (width, height) overrides the size stored in the file; without either, DSEC's
    640 x 480. ``sort=True`` sorts unsorted timestamps instead of refusing them.

    Returns an :class:`EventStream` with at least one event. Raises :class:`EventFileError`
    (a ``ValueError``) naming the file for a missing, empty, unreadable, truncated, inconsistent
    or unsafe file (a pickle referring to anything beyond numpy arrays, dtypes and plain
    containers); any other exception while reading a file is turned into one too, and
    :class:`~pytest_egbench.data.errors.MissingDependencyError` for HDF5 without h5py.
    """
    src = Path(path)
    suffix = src.suffix.lower()
    if suffix not in EVENT_SUFFIXES:
        raise EventFileError(src, f"unknown event file type {suffix or '(no suffix)'!r}; expected one of {', '.join(EVENT_SUFFIXES)}")
    try:
        return _read_events(src, suffix, sensor, sort)
    except (EventFileError, MissingDependencyError):
        raise
    except OSError as exc:
        raise EventFileError(src, f"cannot be read: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 -- a crafted file must end in an error naming it
        raise EventFileError(src, f"unreadable event file ({type(exc).__name__}: {_short(str(exc), 200)})") from None


def _read_events(src: Path, suffix: str, sensor: SensorSize | tuple[int, int] | None, sort: bool) -> EventStream:
    EventFileError.check_readable(src)
    if suffix in (".h5", ".hdf5"):
        return read_dsec_h5(src, sensor=sensor, sort=sort)
    fields, meta = _read_npy(src) if suffix == ".npy" else _read_npz(src)
    default = _sensor_from_meta(meta, DSEC_SENSOR, src)
    t_offset = meta.pop("t_offset", 0)
    try:
        t_offset = int(np.asarray(t_offset).item())
    except (TypeError, ValueError, OverflowError):
        raise EventFileError(src, f"t_offset {_short(t_offset)} is not a whole number of microseconds") from None
    plain = {k: (v.tolist() if isinstance(v, np.ndarray) and v.size <= 16 else v) for k, v in meta.items()}
    return events_from_arrays(**fields, sensor=sensor or default, sort=sort, t_offset_us=t_offset, source=src, metadata=plain)


def write_events_npz(path: str | Path, events: EventStream, *, compress: bool = True) -> Path:
    """Write ``events`` as a pickle-free ``.npz``: ``x``, ``y`` uint16, ``t`` int64 us,
    ``p`` uint8, ``sensor_size`` int64 [width, height], ``t_offset`` int64 us.

    :func:`read_events` reads it back with ``allow_pickle=False``. Returns the path written.
    """
    dst = Path(path)
    save = np.savez_compressed if compress else np.savez
    with open(dst, "wb") as fh:
        save(
            fh,
            x=events.x.astype(np.uint16, copy=False),
            y=events.y.astype(np.uint16, copy=False),
            t=events.t.astype(np.int64, copy=False),
            p=events.p.astype(np.uint8, copy=False),
            sensor_size=np.asarray(events.sensor, dtype=np.int64),
            t_offset=np.int64(events.t_offset_us),
        )
    return dst
