"""Sources of implementations under judgement that tests write to files (a person's module, as text)."""

DOUBLED_DW = """
from scratch_cnn import *  # noqa
from scratch_cnn import Dense as _Dense

class Dense(_Dense):
    def backward(self, dout):
        dx = super().backward(dout)
        self.grads = {k: v * 2 for k, v in self.grads.items()}
        return dx
"""
