"""The optional packages of :mod:`fastcnn.onnx`, imported when a function needs them, never at import time."""

#: What the ImportError says to run when onnx is missing.
INSTALL_HINT = "pip install 'fastcnn[onnx]'"


def require_onnx(what):
    """Import and return the ``onnx`` package, or raise ImportError naming the extra that installs it.

    Parameters
    ----------
    what : str
        Starts the message: ``"{what} needs the onnx package: pip install 'fastcnn[onnx]'"``.

    A folder named ``onnx`` without an ``__init__.py`` on ``sys.path`` (a namespace package, such as
    the test folder ``tests/onnx``) is not the package and counts as missing.
    """
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is None or getattr(onnx, "__file__", None) is None or not hasattr(onnx, "ModelProto"):
        raise ImportError(f"{what} needs the onnx package: {INSTALL_HINT}")
    return onnx
