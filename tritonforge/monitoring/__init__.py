"""Keeping a served model healthy: the prediction log, drift, quality from late labels, fairness, live metrics.

    from tritonforge.monitoring import ParquetSink, PredictionLogger, read_predictions
    logger = PredictionLogger(ParquetSink("logs/"))
    client = TritonClient("127.0.0.1:8001", prediction_log=logger)
    window = read_predictions("logs/", "digits", last=2000)

The prediction log is records (the record and its Arrow schema), logger (sampling, queue, writer thread),
parquet_sink and kafka_sink, log_reader (DuckDB) and labels; the analyses read it through log_reader.

Heavy libraries (pyarrow, duckdb, confluent-kafka, scipy) are imported where they are used, not here.
"""

from __future__ import annotations

from tritonforge.monitoring.kafka_sink import KafkaSink
from tritonforge.monitoring.log_reader import (
    LabelledItems,
    LogSummary,
    PredictionWindow,
    join_labels,
    log_summary,
    parse_window,
    read_labels,
    read_predictions,
)
from tritonforge.monitoring.logger import Delivery, LoggerStats, PredictionLogger, Sink
from tritonforge.monitoring.parquet_sink import ParquetSink
from tritonforge.monitoring.records import LabelRecord, PredictionRecord, TensorSummary

__all__ = [
    "Delivery",
    "KafkaSink",
    "LabelRecord",
    "LabelledItems",
    "LogSummary",
    "LoggerStats",
    "ParquetSink",
    "PredictionLogger",
    "PredictionRecord",
    "PredictionWindow",
    "Sink",
    "TensorSummary",
    "join_labels",
    "log_summary",
    "parse_window",
    "read_labels",
    "read_predictions",
]
