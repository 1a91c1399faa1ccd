"""The tutorial CNN (one image at a time, weights updated inside backprop, float64 throughout) in
the layer protocol: one declaration per layer."""

from reference.impl.adapters import Conventions, class_layer
from tests.impls import style_tutorial as L

tutorial = dict(backward="backprop", float64_only=True, conventions=Conventions(conv_weight="OHW"))
Conv2D = class_layer("Conv2D", lambda c: L.Conv3x3(c.out_ch), **tutorial, params={"W": "filters"},
                     per_sample=("HW", "HWC"), update="product",
                     supports={"kernel_size": 3, "stride": 1, "padding": "valid", "bias": False, "in_ch": 1})  # fmt: skip
MaxPool2D = class_layer("MaxPool2D", lambda c: L.MaxPool2(), **tutorial, per_sample="HWC",
                        supports={"kernel_size": 2, "stride": 2})  # fmt: skip
Dense = class_layer("Dense", lambda c: L.FullyConnected(c.n_in, c.n_out), **tutorial, per_sample="n",
                    params={"W": "weights", "b": "biases"}, update="change", supports={"bias": True})  # fmt: skip
