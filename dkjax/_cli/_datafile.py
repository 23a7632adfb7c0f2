"""A user's data file for ``dkjax train``: a ``.npy`` array or a ``.csv`` table, checked before any work.

Every problem a file can have is reported with where it is (line and column of a CSV, row of
an array), so that ``dkjax train`` fails before it creates a run folder or trains anything.
"""

import csv
import io
import math
import re
from pathlib import Path

import numpy as np

SUFFIXES = (".npy", ".csv")


class DataFileError(ValueError):
    """A data file that cannot be read as a finite table of at least 2 rows."""


def load_data_file(path: str | Path, *, key: str = "data.path") -> np.ndarray:
    """Reads a ``.npy`` array of shape ``(rows, columns)`` or a ``.csv`` table (header row optional).

    A CSV's first line is taken as a header when none of its fields is a number; every other
    line must hold one number per column. Blank lines are skipped.

    Arguments:
        path: the file.
        key: the config key that named the file, used in error messages.

    Returns:
        A float64 array of shape ``(rows, columns)`` with ``rows >= 2``, all finite.

    Raises:
        DataFileError: the file is missing or empty, has another suffix, is not a readable
            array or text table, holds a non-numeric field (line and column named), rows of
            different lengths, a NaN or infinite value (its row named), fewer than 2 rows,
            or is a ``.npy`` array of another shape than ``(rows, columns)``.

    Example:
        >>> rows = load_data_file("measurements.csv")
        >>> rows.shape
        (500, 3)
    """
    path = Path(path)
    where = f"{key}: {path}"
    if path.suffix.lower() not in SUFFIXES:
        raise DataFileError(f"{where}: the file must end in .npy or .csv; got {path.suffix or 'no suffix'!r}.")
    if not path.is_file():
        relative = "" if path.is_absolute() else f" (relative to the working directory {Path.cwd()})"
        raise DataFileError(f"{where} does not exist{relative}.")
    if path.stat().st_size == 0:
        raise DataFileError(f"{where} is empty.")
    rows = _read_npy(path, where) if path.suffix.lower() == ".npy" else _read_csv(path, where)
    if rows.shape[0] < 2:
        raise DataFileError(f"{where} holds {rows.shape[0]} data row(s); at least 2 are needed.")
    return rows


def column_names(path: str | Path | None, dim: int, time_column: str = "") -> list[str]:
    """The names of a data file's ``dim`` columns: a CSV's header, else ``x1``, ..., ``xd``.

    Arguments:
        path: the data file (``None``: generated data).
        dim: the number of state columns.
        time_column: a snapshot table's time column, left out of the names.

    Returns:
        ``dim`` names, for axis labels and the header of ``dkjax sample``'s CSV output.
    """
    names = [f"x{i + 1}" for i in range(dim)]
    if path is None or Path(path).suffix.lower() != ".csv" or not Path(path).is_file():
        return names
    with open(path, encoding="utf-8-sig", newline="") as file:
        for fields in csv.reader(file):
            fields = [field.strip() for field in fields]
            if any(fields):
                header = all(_number(field) is None for field in fields)
                fields = [field for field in fields if not time_column or field != time_column]
                header = header and len(fields) == dim
                return [field or name for field, name in zip(fields, names)] if header else names
    return names


def _read_npy(path: Path, where: str) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise DataFileError(f"{where} is not a readable .npy array ({error}).") from error
    if not isinstance(array, np.ndarray):  # np.load returns an NpzFile for a zip archive
        raise DataFileError(f"{where} is an .npz archive, not a .npy array; save one array with numpy.save.")
    if array.ndim == 1:
        raise DataFileError(
            f"{where} has shape {array.shape}; the data must have shape (rows, columns). "
            "For one column save x.reshape(-1, 1)."
        )
    if array.ndim != 2:
        raise DataFileError(f"{where} has shape {array.shape}; the data must have shape (rows, columns).")
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DataFileError(f"{where} has dtype {array.dtype}; the data must be real numbers (integer or float).")
    if array.size == 0:
        raise DataFileError(f"{where} holds no values (shape {array.shape}).")
    array = array.astype(np.float64)
    bad = np.flatnonzero(~np.all(np.isfinite(array), axis=1))
    if bad.size:
        row = int(bad[0])
        column = int(np.flatnonzero(~np.isfinite(array[row]))[0])
        raise DataFileError(
            f"{where}: row {row} (counting from 0), column {column} is {array[row, column]}; "
            f"{bad.size} row(s) hold NaN or inf. The data must be finite: drop or fill those rows."
        )
    return array


def _number(field: str) -> float | None:
    try:
        return float(field)
    except ValueError:
        return None


def _not_inf_or_nan(field: str) -> bool:
    value = _number(field)
    return value is None or math.isfinite(value)


def _read_csv(path: Path, where: str) -> np.ndarray:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataFileError(f"{where} is not a UTF-8 text file ({error}).") from error
    lines = [
        (number, [field.strip() for field in fields])
        for number, fields in enumerate(csv.reader(io.StringIO(text)), start=1)
        if any(field.strip() for field in fields)
    ]
    if not lines:
        raise DataFileError(f"{where} is empty (no values, only blank lines).")
    first_number, first_fields = lines[0]
    header = all(_number(field) is None for field in first_fields)
    data_lines = lines[1:] if header else lines
    if not data_lines:
        raise DataFileError(f"{where} holds a header line but no data rows.")
    width_line, width = first_number, len(first_fields)
    values = np.empty((len(data_lines), width))
    for row, (number, fields) in enumerate(data_lines):
        if len(fields) != width:
            raise DataFileError(
                f"{where}: line {number} has {len(fields)} field(s) but line {width_line} has {width}; "
                "every row must have the same number of columns."
            )
        for column, field in enumerate(fields, start=1):
            value = _number(field)
            if value is None:
                what = "is empty" if field == "" else f"is {field!r}, not a number"
                hint = "only the first line may be a header"
                if number == first_number:
                    hint = "a header line holds no numbers"
                if ";" in field or "\t" in field:
                    hint = "values must be separated by commas"
                raise DataFileError(f"{where}: line {number}, column {column} {what} ({hint}).")
            if not math.isfinite(value):
                bad = sum(not all(map(_not_inf_or_nan, fs)) for _, fs in data_lines)
                raise DataFileError(
                    f"{where}: line {number}, column {column} is {field!r}; {bad} row(s) hold NaN or inf. "
                    "The data must be finite: drop or fill those rows."
                )
            values[row, column - 1] = value
    return values


def split_rows(rows: np.ndarray, fraction: float, seed: int, *, key: str = "data.heldout_fraction"):
    """``(train, held_out)``: a random ``fraction`` of the rows held out, the rest for training.

    Raises:
        DataFileError: either side would hold fewer than 2 rows (``key`` named).
    """
    num_held = round(fraction * rows.shape[0])
    if num_held < 2 or rows.shape[0] - num_held < 2:
        raise DataFileError(
            f"{key} = {fraction} of {rows.shape[0]} rows holds out {num_held}; both the held-out and the "
            "training rows must number at least 2. Use a larger file or change the fraction."
        )
    order = np.random.default_rng(seed).permutation(rows.shape[0])
    return rows[order[num_held:]], rows[order[:num_held]]


def is_snapshot_file(path: str | Path, time_column: str) -> bool:
    """Whether ``data.path`` holds snapshots: an ``.npz`` file, or a table with a time column named."""
    return Path(path).suffix.lower() == ".npz" or bool(time_column)


def load_snapshot_file(path: str | Path, time_column: str = "", *, key: str = "data.path") -> dict[float, np.ndarray]:
    """Reads snapshots: an ``.npz`` with one ``(n, d)`` array per time, or a CSV with a time column.

    An ``.npz`` array's name is its time, optionally after a non-numeric prefix (``"0.5"``,
    ``"t0.5"``, ``"day_2"``). A CSV needs a header line naming ``time_column``; the other
    columns are the state, and the rows are grouped by their time.

    Arguments:
        path: the file; time_column: the CSV's time column (unused for ``.npz``).
        key: the config key that named the file, used in error messages.

    Returns:
        ``{time: float64 array (n, d)}``.

    Raises:
        DataFileError: as ``load_data_file``, an array name without a time, arrays of
            different widths, no header or no column ``time_column``, or a time with fewer
            than 2 rows (the time named).

    Example:
        >>> snapshots = load_snapshot_file("cells.csv", "day")
        >>> sorted(snapshots)
        [0.0, 2.0, 4.0]
    """
    path = Path(path)
    where = f"{key}: {path}"
    if not path.is_file():
        raise DataFileError(f"{where} does not exist.")
    if path.suffix.lower() == ".npz":
        snapshots = _read_npz(path, where)
    elif path.suffix.lower() == ".csv":
        snapshots = _read_timed_csv(path, where, time_column)
    else:
        raise DataFileError(
            f"{where}: snapshots come in a .npz or a .csv file with data.time_column; got {path.suffix!r}."
        )
    for time, rows in snapshots.items():
        if rows.shape[0] < 2:
            raise DataFileError(f"{where}: time {time} has {rows.shape[0]} row(s); every time needs at least 2.")
    return dict(sorted(snapshots.items()))


def _time_of(name: str) -> float | None:
    match = re.search(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$", name)
    return None if match is None else float(match.group(0))


def _read_npz(path: Path, where: str) -> dict[float, np.ndarray]:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataFileError(f"{where} is not a readable .npz archive ({error}).") from error
    snapshots = {}
    for name in archive.files:
        time = _time_of(name)
        if time is None:
            raise DataFileError(f"{where}: array {name!r} names no time; name each array by its time, e.g. 't0.5'.")
        rows = np.asarray(archive[name], dtype=np.float64)
        if rows.ndim != 2:
            raise DataFileError(f"{where}: array {name!r} has shape {rows.shape}; each must be (rows, columns).")
        if not np.all(np.isfinite(rows)):
            raise DataFileError(f"{where}: array {name!r} holds NaN or inf; the data must be finite.")
        snapshots[time] = rows
    if not snapshots:
        raise DataFileError(f"{where} holds no arrays.")
    if len({rows.shape[1] for rows in snapshots.values()}) > 1:
        raise DataFileError(f"{where}: the arrays differ in their number of columns; every time needs the same.")
    return snapshots


def _read_timed_csv(path: Path, where: str, time_column: str) -> dict[float, np.ndarray]:
    first = next(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"))), [])
    names = [field.strip() for field in first]
    if time_column not in names:
        raise DataFileError(f"{where}: data.time_column = {time_column!r} is not in the header line {names}.")
    values = _read_csv(path, where)
    column = names.index(time_column)
    times, state = values[:, column], np.delete(values, column, axis=1)
    return {float(t): state[times == t] for t in np.unique(times)}
