"""Defect size analysis: anomaly maps -> defect regions measured in pixels and mm / cm / inch."""
from size_analyzer.defect_size_analyzer import (
    CSV_COLUMNS,
    MM_PER_UNIT,
    SEVERITY_LEVELS,
    DefectMetrics,
    DefectSizeAnalyzer,
    SeverityThresholds,
    SizeAnalysisError,
    annotate_image,
    export_csv,
    export_json,
    normalise_unit,
    read_csv,
    summarize_batch,
    to_mm2,
)

__all__ = [
    "CSV_COLUMNS",
    "MM_PER_UNIT",
    "SEVERITY_LEVELS",
    "DefectMetrics",
    "DefectSizeAnalyzer",
    "SeverityThresholds",
    "SizeAnalysisError",
    "annotate_image",
    "export_csv",
    "export_json",
    "normalise_unit",
    "read_csv",
    "summarize_batch",
    "to_mm2",
]
