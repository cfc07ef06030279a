"""Request batching: several calls' arguments stacked into one tree, and
one stacked result split back into one result per call.

Trees are dicts, lists and tuples (the nodes) of leaves: numpy arrays,
scalars, anything ``numpy.stack`` takes. Every call of a batch must have
the same tree structure; leaf ``i`` of the stacked tree is
``numpy.stack([leaf_i of call 0, leaf_i of call 1, ...])``, with the calls
along a new first axis. A stacked result must have that same first axis on
every leaf; call ``k`` gets ``leaf[k]`` of each.
"""

import numpy as np

__all__ = ["stack", "split"]


def stack(trees, path="args"):
    """One tree whose leaves are the leaves of ``trees`` stacked along a new
    first axis. ``ValueError`` if the trees differ in structure or shape."""
    first = trees[0]
    if isinstance(first, dict):
        keys = list(first)
        for t in trees[1:]:
            if not isinstance(t, dict) or set(t) != set(keys):
                raise ValueError(f"the calls of a batch differ at {path}: every call must "
                                 f"send the same keys ({sorted(map(str, keys))})")
        return {k: stack([t[k] for t in trees], f"{path}[{k!r}]") for k in keys}
    if isinstance(first, (list, tuple)):
        n = len(first)
        for t in trees[1:]:
            if not isinstance(t, (list, tuple)) or len(t) != n:
                raise ValueError(f"the calls of a batch differ at {path}: every call must "
                                 f"send a list of {n} items")
        return type(first)(stack([t[i] for t in trees], f"{path}[{i}]") for i in range(n))
    try:
        return np.stack([np.asarray(t) for t in trees])
    except ValueError as e:
        raise ValueError(f"the calls of a batch cannot be stacked at {path}: {e}") from None


def split(tree, n, path="result"):
    """``n`` trees, the ``k``-th made of ``leaf[k]`` of every leaf of
    ``tree``. ``None`` splits into ``n`` Nones. ``ValueError`` if a leaf
    does not have ``n`` entries along its first axis."""
    if tree is None:
        return [None] * n
    if isinstance(tree, dict):
        parts = {k: split(v, n, f"{path}[{k!r}]") for k, v in tree.items()}
        return [{k: p[i] for k, p in parts.items()} for i in range(n)]
    if isinstance(tree, (list, tuple)):
        parts = [split(v, n, f"{path}[{j}]") for j, v in enumerate(tree)]
        return [type(tree)(p[i] for p in parts) for i in range(n)]
    a = np.asarray(tree)
    if a.ndim == 0 or a.shape[0] != n:
        shape = "a scalar" if a.ndim == 0 else f"shape {a.shape}"
        raise ValueError(f"a batched function must return one entry per call along the "
                         f"first axis: {path} has {shape}, the batch has {n} calls")
    return list(a)
