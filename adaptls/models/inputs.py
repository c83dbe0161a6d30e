"""What a model takes: one declaration per model class, matched against the data's facts.

Every model class states, in a class attribute ``inputs``, the batches it reads and what
it predicts, in the terms a datamodule states its own facts (``token_ids``,
``token_level``, ``input_shape``). ``adaptls.train`` matches the two before anything is
loaded, so a model given data it cannot read (token ids to a CNN over float series, a
language-modelling corpus to a classifier) fails with one line at the start instead of
deep inside a layer. A model factory function is matched through the class it returns
(its return annotation); a model that declares nothing is not checked.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from adaptls.models._checks import check_shape


@dataclass(frozen=True)
class ModelInputs:
    """The batches a model reads and the targets it predicts.

    Attributes:
        ranks: the lengths of ``input_shape`` it takes (1: ``(L,)`` or ``(T,)``,
            2: ``(C, L)``, 3: ``(C, H, W)``).
        layout: those shapes in words, for messages (``"(C, H, W)"``).
        token_ids: it embeds int64 token ids; False: it reads float features.
        token_level: it predicts every position, logits (B, T, K) for targets (B, T)
            (language modelling); False: one prediction (B, K) per example.
    """

    ranks: tuple[int, ...]
    layout: str
    token_ids: bool = False
    token_level: bool = False

    def check_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """``input_shape`` as a tuple, or ValueError naming the layouts allowed."""
        return check_shape("input_shape", input_shape, self.ranks, self.layout)

    def accepts(self, input_shape: Sequence[int], *, token_ids: bool, token_level: bool) -> bool:
        """Whether data with these facts fits this model."""
        return (
            self.token_ids == token_ids
            and self.token_level == token_level
            and len(input_shape) in self.ranks
        )

    def describe(self) -> str:
        return describe_inputs(self.layout, token_ids=self.token_ids, token_level=self.token_level)


def describe_inputs(layout: str, *, token_ids: bool, token_level: bool) -> str:
    """``"token ids (128,), one target per token"``: a kind of data, in words."""
    kind = "token ids" if token_ids else "float features"
    return f"{kind} {layout}, one target per {'token' if token_level else 'example'}"


def model_class(factory: Callable[..., Any]) -> type | None:
    """The class the model ``factory`` builds (a class, a function annotated with the class
    it returns, or a ``functools.partial`` of either); None if that cannot be told."""
    while isinstance(factory, functools.partial):
        factory = factory.func
    if isinstance(factory, type):
        return factory
    try:
        built = typing.get_type_hints(factory).get("return")
    except (NameError, TypeError):  # annotations that do not resolve: nothing declared
        return None
    return built if isinstance(built, type) else None


def model_inputs(factory: Callable[..., Any]) -> ModelInputs | None:
    """The declaration of the model ``factory`` builds; None if it declares none."""
    inputs = getattr(model_class(factory), "inputs", None)
    return inputs if isinstance(inputs, ModelInputs) else None


def model_default_lr(factory: Callable[..., Any]) -> float | None:
    """The Adam/AdamW learning rate the model ``factory`` builds trains at by default (its
    class's ``default_lr``), used where ``optimizer.lr`` is null; None if it declares none."""
    lr = getattr(model_class(factory), "default_lr", None)
    return float(lr) if isinstance(lr, (int, float)) else None
