"""A user's data file for ``dkjax train``: what it reads, and each bad file's error, raised before
anything is written."""

import numpy as np
import pytest

from dkjax._cli._main import main
from dkjax._cli._datafile import DataFileError, load_data_file, split_rows

ROWS = np.array([[1.5, -2.0], [3.0, 4.25], [-0.5, 1e-3]])


def _write(tmp_path, name: str, contents) -> str:
    path = tmp_path / name
    if isinstance(contents, np.ndarray):
        np.save(path, contents)
    elif isinstance(contents, bytes):
        path.write_bytes(contents)
    else:
        path.write_text(contents)
    return str(path)


@pytest.mark.parametrize(
    "name, contents",
    [
        ("plain.csv", "1.5,-2\n3,4.25\n-0.5,1e-3\n"),
        ("header.csv", "x, y\n1.5,-2\n3,4.25\n-0.5,1e-3\n"),
        ("bom_quotes_blanks.csv", '\ufeff"x","y"\r\n\r\n1.5 , -2\r\n"3",4.25\r\n-0.5,0.001\r\n\r\n'),
        ("array.npy", ROWS),
        ("integers.npy", np.array([[1, 2], [3, 4], [5, 6]], np.int32)),
    ],
)
def test_reads_csv_with_or_without_header_and_npy(tmp_path, name, contents):
    rows = load_data_file(_write(tmp_path, name, contents))
    expected = np.array([[1, 2], [3, 4], [5, 6]], float) if name == "integers.npy" else ROWS
    assert rows.dtype == np.float64
    np.testing.assert_array_equal(rows, expected)


@pytest.mark.parametrize(
    "name, contents, match",
    [
        ("absent.csv", None, "does not exist"),
        ("data.txt", "1,2\n3,4\n", "must end in .npy or .csv; got '.txt'"),
        ("empty.csv", "", "is empty"),
        ("blank.csv", "\n \n\n", "is empty (no values, only blank lines)"),
        ("empty.npy", b"", "is empty"),
        ("header_only.csv", "x,y\n", "holds a header line but no data rows"),
        ("one_row.csv", "x,y\n1,2\n", "holds 1 data row(s); at least 2 are needed"),
        ("one_row.npy", np.ones((1, 3)), "holds 1 data row(s); at least 2 are needed"),
        ("text.csv", "x,y\n1,2\n3,abc\n",
         "line 3, column 2 is 'abc', not a number (only the first line may be a header)"),
        ("mixed_header.csv", "x,2\n1,2\n", "line 1, column 1 is 'x', not a number (a header line holds no numbers)"),
        ("hole.csv", "1,2\n3,\n", "line 2, column 2 is empty"),
        ("semicolons.csv", "a;b\n1;2\n",
         "line 2, column 1 is '1;2', not a number (values must be separated by commas)"),
        ("nan.csv", "x,y\n1,2\n3,nan\n5,inf\n", "line 3, column 2 is 'nan'; 2 row(s) hold NaN or inf"),
        ("inf.npy", np.array([[0.0, 1.0], [2.0, 3.0], [4.0, np.inf]]), "row 2 (counting from 0), column 1 is inf"),
        ("ragged.csv", "1,2\n3,4,5\n", "line 2 has 3 field(s) but line 1 has 2"),
        ("vector.npy", np.arange(5.0), "has shape (5,); the data must have shape (rows, columns). For one column"),
        ("cube.npy", np.zeros((2, 2, 2)), "has shape (2, 2, 2); the data must have shape (rows, columns)"),
        ("no_columns.npy", np.zeros((4, 0)), "holds no values (shape (4, 0))"),
        ("words.npy", np.array([["a", "b"], ["c", "d"]]), "has dtype <U1; the data must be real numbers"),
        ("flags.npy", np.ones((3, 2), bool), "has dtype bool"),
        ("garbage.npy", b"not an array at all", "is not a readable .npy array"),
        ("binary.csv", b"\xff\xfe\x00\x81", "is not a UTF-8 text file"),
    ],
)
def test_each_bad_file_is_named_with_where_the_problem_is(tmp_path, name, contents, match):
    path = str(tmp_path / name) if contents is None else _write(tmp_path, name, contents)
    with pytest.raises(DataFileError) as error:
        load_data_file(path)
    assert match in str(error.value)
    assert str(error.value).startswith(f"data.path: {path}")


def test_split_rows_is_a_seeded_partition_and_refuses_tiny_sides():
    rows = np.arange(20.0).reshape(10, 2)
    train, held = split_rows(rows, 0.3, seed=4)
    assert held.shape == (3, 2) and train.shape == (7, 2)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, held]), axis=0), rows)
    again = split_rows(rows, 0.3, seed=4)
    np.testing.assert_array_equal(again[1], held)
    with pytest.raises(DataFileError, match="data.heldout_fraction = 0.1 of 10 rows holds out 1"):
        split_rows(rows, 0.1, seed=0)


GOOD_CSV = "a,b\n" + "".join(f"{i},{(i * 7) % 11}\n" for i in range(40))


@pytest.mark.parametrize(
    "csv, overrides, match",
    [
        ("x,y\n1,2\n3,abc\n", [], "data.path: data.csv: line 3, column 2 is 'abc', not a number"),
        ("x,y\n1,2\n3,nan\n", [], "data.path: data.csv: line 3, column 2 is 'nan'"),
        ("", [], "data.path: data.csv is empty"),
        ("x,y\n1,2\n", [], "holds 1 data row(s)"),
        ("1,2\n3\n", [], "line 2 has 1 field(s) but line 1 has 2"),
        ("".join(f"{i},{i}\n" for i in range(6)), [], "data.heldout_fraction = 0.2 of 6 rows holds out 1"),
        ("".join(f"{i},{-i}\n" for i in range(12)), [], "train.validation_fraction: validation as a fraction"),
        ("".join(f"{i},5\n" for i in range(40)), [], "data.standardize: data column(s) [1] are constant"),
        (GOOD_CSV, ["model.name=LinearSDE", "model.parameters={ A = [[-1.0]], S = [[1.0]] }"],
         "data.path: data.csv with 2 column(s) does not fit LinearSDE"),
        (GOOD_CSV, ["model.name=OrnsteinUhlenbeck", "data.standardize=true"],
         "data.standardize = true needs model.name = \"neural\""),
    ],
)
def test_bad_data_fails_before_anything_is_written(tmp_path, monkeypatch, capsys, csv, overrides, match):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text(csv)
    args = ["train", "--set", "data.path=data.csv", "--set", "train.dtype=float64", "--quiet"]
    with pytest.raises(SystemExit) as exit_info:
        main(args + [arg for override in overrides for arg in ("--set", override)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: dkjax train") and match in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]  # no run folder, no runs/
