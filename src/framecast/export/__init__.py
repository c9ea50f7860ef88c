"""framecast.export: trained models to portable formats (ONNX for the motion model)."""

from framecast.export.onnx import ExportResult, export_onnx

__all__ = ["ExportResult", "export_onnx"]
