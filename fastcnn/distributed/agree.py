"""Refusing ranks that were started with different settings: fingerprints, one gather, one clear message.

Each rank describes what must be the same everywhere as a flat dict of short values (numbers, strings,
digests of arrays); :func:`check_same` gathers every rank's dict and, where any rank's differs from rank 0's,
raises :class:`SettingsMismatch` on every rank with one message naming each differing setting and the ranks'
values.  Every rank raises the same error, so nothing is left waiting in a collective.
"""

import hashlib
import json

import numpy as np

__all__ = ["SettingsMismatch", "fingerprint", "check_same", "describe_fit"]


class SettingsMismatch(ValueError):
    """The ranks of one job were started with different settings (model, batch, seed, data ...)."""


def fingerprint(a):
    """A short hex digest of an array's shape, dtype and bytes (``None`` for None)."""
    if a is None:
        return None
    a = np.ascontiguousarray(a)
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{a.shape}{a.dtype.str}".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _short(value):
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def check_same(comm, values, what="settings", derived=()):
    """SettingsMismatch on every rank unless every rank's ``values`` (a dict) equals rank 0's.

    Parameters
    ----------
    comm : fastcnn.distributed.Communicator
    values : dict of str -> JSON-able value
        What must agree (digests from :func:`fingerprint` for arrays), in the order the message lists them.
    what : str
        Named in the message.
    derived : collection of str
        Keys that follow from others (the data's digests follow from the seed of its split): named only when
        nothing else differs, so the message leads with the cause.

    Raises
    ------
    SettingsMismatch
        ``the 2 ranks were started with different settings: seed: rank 0 has 3, rank 1 has 4; ...``
    """
    everyone = comm.allgather(values)
    reference = everyone[0]
    keys = list(dict.fromkeys(k for v in everyone for k in v))
    differing = [k for k in keys if any(v.get(k) != reference.get(k) for v in everyone)]
    if not differing:
        return
    shown = [k for k in differing if k not in derived] or differing
    problems = []
    for key in shown:
        others = [f"rank {r} has {_short(v.get(key))}" for r, v in enumerate(everyone)
                  if v.get(key) != reference.get(key)]
        problems.append(f"{key}: rank 0 has {_short(reference.get(key))}, " + ", ".join(others[:3])
                        + (f" (and {len(others) - 3} more ranks)" if len(others) > 3 else ""))
    raise SettingsMismatch(f"the {comm.size} ranks were started with different {what}: " + "; ".join(problems)
                           + "; start every rank with the same command, data and files")


def describe_fit(model, x, y, optimizer, schedule, augment, validation_data, **settings):
    """What ``fit`` needs to be the same on every rank: the architecture, the data and the hyper-parameters."""
    from ..serialize import model_to_config

    out = {key: value for key, value in settings.items()}
    out["model"] = hashlib.blake2b(json.dumps(model_to_config(model), sort_keys=True, default=str).encode(),
                                   digest_size=8).hexdigest()
    out["x"], out["y"] = fingerprint(x), fingerprint(y)
    if validation_data is not None:
        out["validation x"], out["validation y"] = (fingerprint(np.asarray(a)) for a in validation_data)
    out["optimizer"] = type(optimizer).__name__
    state = getattr(optimizer, "state_dict", lambda: {})()
    for key, value in state.items():
        if isinstance(value, (int, float, bool, str)) or value is None:
            out[f"optimizer {key}"] = value
    out["schedule"] = None if schedule is None else type(schedule).__name__
    out["augment"] = None if augment is None else repr(augment)
    return out
