"""reference: the judges of scratch_cnn (PyTorch twins, finite differences, curves, reports, the gate)."""
