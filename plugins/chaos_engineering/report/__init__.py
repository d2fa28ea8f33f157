"""The run report: impact analysis, findings and the report.json, report.html and report.pdf built from them."""

from chaos_engineering.report.analysis import AnalysisSettings, analyse_run
from chaos_engineering.report.build import ReportFiles, build_report, write_report
from chaos_engineering.report.schema import REPORT_SCHEMA, REPORT_SCHEMA_VERSION, ReportSchemaError, validate_report

__all__ = [
    "REPORT_SCHEMA",
    "REPORT_SCHEMA_VERSION",
    "AnalysisSettings",
    "ReportFiles",
    "ReportSchemaError",
    "analyse_run",
    "build_report",
    "validate_report",
    "write_report",
]
