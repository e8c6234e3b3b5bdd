"""Serving: an upload's bytes to a decided, explained result (intake, page and trace area, the shared
preprocessing, the networks in ONNX Runtime, the checks around them, Grad-CAM, what is kept of the
picture). Never imports training, TensorFlow or Keras."""
