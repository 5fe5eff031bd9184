"""Train LeNet-5 on MNIST to 99 % test accuracy, printing the time per epoch.

    python examples/train_lenet_mnist.py --data path/to/mnist    # the full MNIST (IDX files)
    python examples/train_lenet_mnist.py                         # the sample packaged with fastcnn
    python examples/train_lenet_mnist.py --tiny                  # seconds: what CI runs

The recipe: SGD with momentum 0.9 and weight decay 5e-4, batch 64, learning rate
0.05 for 8 epochs then 0.005 for 2.  On the full MNIST it reaches about 99.2 %.
"""

import argparse
import time

import fastcnn
from fastcnn.data import Normalizer, load_mnist


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="folder with the MNIST IDX files (default: packaged sample)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--tiny", action="store_true", help="one epoch on 512 images")
    args = parser.parse_args()

    (x_train, y_train), (x_test, y_test) = load_mnist(args.data)
    epochs = args.epochs
    if args.tiny:
        x_train, y_train, x_test, y_test, epochs = x_train[:512], y_train[:512], x_test[:128], y_test[:128], 1
    norm = Normalizer("standardize").fit(x_train)  # pixels to [0, 1], then the training images' mean and std
    x_train, x_test = norm.transform(x_train), norm.transform(x_test)

    fastcnn.manual_seed(0)
    model = fastcnn.models.lenet5()
    opt = fastcnn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    decay_at = max(epochs - 2, 1)
    for epoch in range(epochs):
        if epoch == decay_at:
            opt.lr = 0.005
        start = time.perf_counter()
        history = model.fit(x_train, y_train, epochs=1, batch_size=64, optimizer=opt, seed=epoch, verbose=False)
        seconds = time.perf_counter() - start
        result = model.evaluate(x_test, y_test)
        print(f"epoch {epoch + 1:2d}/{epochs}  lr {opt.lr:<6g} loss {history['loss'][0]:.4f}  "
              f"test accuracy {100 * result['accuracy']:.2f}%  {seconds:.1f}s ({len(x_train) / seconds:,.0f} img/s)")
    print(f"final test accuracy: {100 * result['accuracy']:.2f}% on {len(x_test)} images")
    return result


if __name__ == "__main__":
    main()
