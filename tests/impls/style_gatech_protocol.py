"""The course-assignment modules (NCHW, OIHW ``weight``/``bias``, a backward that returns None and
leaves ``self.dx``, ``self.dw``, ``self.db``) in the layer protocol."""

from reference.impl.adapters import Conventions, class_layer
from tests.impls import style_gatech as L

gatech = dict(conventions=Conventions(images="NCHW", conv_weight="OIHW"),
              backward=lambda layer, d: (layer.backward(d), layer.dx)[1])  # fmt: skip
weights = dict(params={"W": "weight", "b": "bias"}, grads={"W": "dw", "b": "db"}, supports={"bias": True})
Conv2D = class_layer("Conv2D", lambda c: L.Conv2D(c.in_ch, c.out_ch, c.one("kernel_size"), c.one("stride"),
                     c.symmetric_pad()), **gatech, **weights)  # fmt: skip
MaxPool2D = class_layer("MaxPool2D", lambda c: L.MaxPooling(c.one("kernel_size"), c.one("stride")), **gatech)
ReLU = class_layer("ReLU", lambda c: L.ReLU(), **gatech)
Dense = class_layer("Dense", lambda c: L.Linear(c.n_in, c.n_out), **gatech, **weights)
