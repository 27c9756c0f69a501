"""The names and hyper-parameters of the 32-op pool (Table 2), free of torch for the API."""

from __future__ import annotations

from dataclasses import dataclass

from hurricane.registry import Registry


@dataclass(frozen=True)
class OpDef:
    """One candidate operator: its family and hyper-parameters (builders live in ops.py)."""

    name: str
    family: str  # SEP, MB, Choice, ChoiceX
    kernel: int
    expand: int
    se: bool


OPS: Registry[OpDef] = Registry("operator")


def _register_pool() -> None:
    """3+3 SEP, 9+9 MB, 3+3 Choice, 1+1 ChoiceX: 32 ops."""
    for se in (False, True):
        sfx = "_SE" if se else ""
        for k in (3, 5, 7):
            OPS.register(f"SEP_{k}{sfx}", OpDef(f"SEP_{k}{sfx}", "SEP", k, 1, se))
        for k in (3, 5, 7):
            for e in (1, 3, 6):
                OPS.register(f"MB_{k}_{e}{sfx}", OpDef(f"MB_{k}_{e}{sfx}", "MB", k, e, se))
        for k in (3, 5, 7):
            OPS.register(f"Choice_{k}{sfx}", OpDef(f"Choice_{k}{sfx}", "Choice", k, 1, se))
        OPS.register(f"ChoiceX{sfx}", OpDef(f"ChoiceX{sfx}", "ChoiceX", 3, 1, se))


_register_pool()

#: The manual ShuffleNetV2 space of SPOS, used as a baseline space.
MANUAL_SPACE_OPS: tuple[str, ...] = ("Choice_3", "Choice_5", "Choice_7", "ChoiceX")
