"""edge-ad: RGB-D student-teacher anomaly detection for factory lines.

The ``edge_ad`` package is the device runtime and CLI. It depends on numpy, OpenCV,
onnxruntime and (on the Jetson) TensorRT only; it never imports torch.
"""

__version__ = "0.1.0"
