"""Which student layer learns from which teacher layer, for models of different depths."""

from __future__ import annotations

from kd.errors import ConfigError


def uniform_map(n_student: int, n_teacher: int) -> list[tuple[int, int]]:
    """Student layer i <-> teacher layer round((i+1)*N/M)-1 (0-based); the last maps to the last."""
    return [(i, round((i + 1) * n_teacher / n_student) - 1) for i in range(n_student)]


def layer_pairs(strategy: str, explicit, n_student: int, n_teacher: int, *, key: str) -> list[tuple[int, int]]:
    """(student, teacher) layer index pairs, 0-based, validated against the real layer counts."""
    if strategy == "uniform":
        return uniform_map(n_student, n_teacher)
    if strategy == "last":
        return [(n_student - 1, n_teacher - 1)]
    pairs = [tuple(p) for p in explicit or ()]
    if not pairs:
        raise ConfigError(f"params: {key} is empty; layer_map 'explicit' needs [[student, teacher], ...]")
    for p in pairs:
        if len(p) != 2 or not (0 <= p[0] < n_student and 0 <= p[1] < n_teacher):
            raise ConfigError(
                f"params: {key} has pair {list(p)}, but the student has layers 0..{n_student - 1} "
                f"and the teacher 0..{n_teacher - 1} here"
            )
    return pairs
