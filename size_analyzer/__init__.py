"""Defect size analysis: anomaly maps -> defect regions measured in pixels and mm / cm / inch.

`measure` finds and measures the regions (`DefectSizeAnalyzer` -> `SizeAnalysis` of `Defect`s),
`report` turns analyses into JSON-ready dicts, CSV text and batch summaries, `draw` draws them.
"""
from size_analyzer.draw import SEVERITY_COLOURS_BGR, draw_defects
from size_analyzer.measure import (
    MM_PER_UNIT,
    PIXEL_UNIT,
    SEVERITY_LEVELS,
    UNITS,
    Defect,
    DefectSizeAnalyzer,
    SeverityThresholds,
    SizeAnalysis,
    SizeAnalysisError,
)
from size_analyzer.report import CSV_COLUMNS, csv_rows, csv_text, frame_report, summarize_batch

__all__ = [
    "CSV_COLUMNS",
    "MM_PER_UNIT",
    "PIXEL_UNIT",
    "SEVERITY_COLOURS_BGR",
    "SEVERITY_LEVELS",
    "Defect",
    "DefectSizeAnalyzer",
    "SeverityThresholds",
    "SizeAnalysis",
    "SizeAnalysisError",
    "UNITS",
    "csv_rows",
    "csv_text",
    "draw_defects",
    "frame_report",
    "summarize_batch",
]
