"""Data utilities for SOLOv2: image preprocessing, COCO result export and visualisation."""
