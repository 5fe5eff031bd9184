"""Train LeNet-5, export it to ONNX, run it in ONNX Runtime, and read it back into fastcnn.

    python examples/onnx_roundtrip.py                 # writes lenet5.onnx
    python examples/onnx_roundtrip.py --out m.onnx --epochs 3
    python examples/onnx_roundtrip.py --tiny          # what CI runs: a temporary folder

Needs ``pip install 'fastcnn[onnx]'`` (onnx and onnxruntime).  The model starts with a Normalize
layer (the training images' statistics), so the ONNX graph takes raw pixel values 0-255 as floats:
whatever runs it needs nothing from fastcnn.  ONNX Runtime's outputs are compared with fastcnn's,
then the file is loaded back with ``fastcnn.onnx.load``, trained one more epoch and saved as a
checkpoint, which shows that an imported model is a fastcnn model like any other.
"""

import argparse
import os
import tempfile

import numpy as np

import fastcnn
import fastcnn.onnx
from fastcnn.data import Normalizer, load_sample


def train(x_train, y_train, epochs):
    """LeNet-5 behind a Normalize layer fitted on the uint8 training images, trained with SGD."""
    fastcnn.manual_seed(0)
    norm = Normalizer("standardize").fit(x_train)
    model = fastcnn.Sequential(norm.as_layer(), *fastcnn.models.lenet5().layers, input_shape=(1, 28, 28))
    opt = fastcnn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, optimizer=opt, seed=0, verbose=False)
    return model


def run_in_onnx_runtime(path, x):
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="lenet5.onnx", help="the ONNX file to write (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="one epoch on 512 images, files in a temporary folder")
    args = parser.parse_args()

    (x_train, y_train), (x_test, y_test) = load_sample()
    epochs, folder = args.epochs, None
    if args.tiny:
        x_train, y_train, x_test, y_test, epochs = x_train[:512], y_train[:512], x_test[:128], y_test[:128], 1
        folder = tempfile.TemporaryDirectory()
        args.out = os.path.join(folder.name, "lenet5.onnx")
    model = train(x_train, y_train, epochs)
    x = x_test.astype(np.float32)  # raw pixels: the Normalize layer is in the graph
    print(f"fastcnn test accuracy: {100 * model.evaluate(x, y_test)['accuracy']:.2f}%")

    fastcnn.onnx.export(model, args.out)
    print(f"wrote {args.out} (opset {fastcnn.onnx.OPSET}, input (N, 1, 28, 28), dynamic batch)")
    ours, theirs = model.predict(x), run_in_onnx_runtime(args.out, x)
    difference = float(np.abs(ours - theirs).max() / np.abs(ours).max())
    agree = float((ours.argmax(1) == theirs.argmax(1)).mean())
    assert difference < 1e-5, difference
    print(f"ONNX Runtime gives fastcnn's outputs: largest difference {difference:.1e} of the largest logit, "
          f"{100 * agree:.0f}% of the labels the same")

    back = fastcnn.onnx.load(args.out)
    assert np.array_equal(back.predict(x), ours)
    back.fit(x_train, y_train, epochs=1, batch_size=64, seed=1, verbose=False)
    checkpoint = os.path.splitext(args.out)[0] + ".npz"
    back.save(checkpoint)
    print(f"loaded back: {len(back.layers)} layers, the same outputs; trained one more epoch "
          f"(test accuracy {100 * back.evaluate(x, y_test)['accuracy']:.2f}%) and saved {checkpoint}")
    if folder is not None:
        folder.cleanup()


if __name__ == "__main__":
    main()
