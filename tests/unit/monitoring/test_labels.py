"""Late labels from a file into the log (`tritonforge monitor labels`), read back and joined."""

from __future__ import annotations

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from tritonforge.cli import monitor_log
from tritonforge.cli.one_line_errors import one_line_errors
from tritonforge.errors import ConfigError
from tritonforge.monitoring.labels import import_labels
from tritonforge.monitoring.log_reader import read_labels


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command("labels")(one_line_errors(monitor_log.labels))
    app.command("log-stats")(one_line_errors(monitor_log.log_stats))
    return app


def test_csv_labels_are_stored_with_item_index_defaulting_to_zero(tmp_path):
    pd.DataFrame({"request_id": ["a", "b"], "label": [3, 4]}).to_csv(tmp_path / "l.csv", index=False)
    assert import_labels(tmp_path / "l.csv", log=tmp_path / "log", model="digits") == 2
    labels = read_labels(tmp_path / "log", "digits")
    assert labels[["request_id", "item_index", "label"]].values.tolist() == [["a", 0, 3], ["b", 0, 4]]
    assert labels["model"].tolist() == ["digits", "digits"]
    assert len(read_labels(tmp_path / "log", "minilm")) == 0


def test_parquet_labels_keep_string_classes(tmp_path):
    frame = pd.DataFrame({"request_id": ["a", "a"], "item_index": [0, 1], "label": ["cat", "dog"]})
    frame.to_parquet(tmp_path / "l.parquet")
    import_labels(tmp_path / "l.parquet", log=tmp_path / "log")
    assert read_labels(tmp_path / "log")["label"].tolist() == ["cat", "dog"]


def test_a_file_without_a_label_column_is_a_one_line_error(tmp_path, app):
    pd.DataFrame({"request_id": ["a"]}).to_csv(tmp_path / "l.csv", index=False)
    with pytest.raises(ConfigError, match="lacks column"):
        import_labels(tmp_path / "l.csv", log=tmp_path / "log")
    result = CliRunner().invoke(app, ["labels", str(tmp_path / "l.csv"), "--log", str(tmp_path / "log")])
    assert result.exit_code == 1 and result.output.startswith("ConfigError: labels file")


def test_labels_command_stores_and_log_stats_counts_them(tmp_path, app):
    from tritonforge.monitoring.logger import PredictionLogger
    from tritonforge.monitoring.parquet_sink import ParquetSink
    from tritonforge.monitoring.records import PredictionRecord

    with PredictionLogger(ParquetSink(tmp_path / "log")) as log:
        log.log(PredictionRecord.create(model="digits", request_id="a", latency_s=0.002))
    pd.DataFrame({"request_id": ["a", "zz"], "label": [1, 2]}).to_csv(tmp_path / "l.csv", index=False)
    stored = CliRunner().invoke(app, ["labels", str(tmp_path / "l.csv"), "--log", str(tmp_path / "log")])
    assert stored.exit_code == 0 and "stored 2 labels" in stored.output
    stats = CliRunner().invoke(app, ["log-stats", "--log", str(tmp_path / "log")], env={"COLUMNS": "200"})
    assert stats.exit_code == 0
    row = next(line for line in stats.output.splitlines() if "digits" in line)
    assert [cell.strip() for cell in row.split("│")[1:8]] == ["digits", "1", "1", "0", "2.00", "2.00", "1"]
