"""The data/model check of ``adaptls.train``: a model must read what the data gives.

A datamodule states its batches (``token_ids``: int64 token ids rather than float
features; ``token_level``: one target per token, as in language modelling;
``input_shape``), a model class states what it reads (``inputs``,
:class:`~adaptls.models.inputs.ModelInputs`). The two are matched right after both are
configured, before the model is built or any data is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import OmegaConf

from adaptls.models.inputs import ModelInputs, describe_inputs, model_inputs
from adaptls.run.config import ConfigError


def check_model_fits_data(
    datamodule: Any, factory: Any, *, data: str, model: str, model_options: Path
) -> None:
    """ConfigError unless the model ``factory`` builds reads the batches of ``datamodule``.

    ``data`` and ``model`` are the options chosen (``data=text_lm``, ``model=cnn1d``);
    ``model_options`` the folder of the model group's yamls, read only to name the
    models that would fit. A model that declares nothing is not checked (its own
    checks apply when it is built).
    """
    inputs = model_inputs(factory)
    if inputs is None:
        return
    shape = tuple(datamodule.input_shape)
    facts = {
        "token_ids": getattr(datamodule, "token_ids", False),
        "token_level": getattr(datamodule, "token_level", False),
    }
    if inputs.accepts(shape, **facts):
        return
    fitting = [
        name
        for name, declared in _declared_models(model_options).items()
        if declared.accepts(shape, **facts)
    ]
    allowed = ", ".join(f"model={name}" for name in fitting) or "none of conf/model"
    raise ConfigError(
        f"model={model} reads {inputs.describe()}, but data={data} gives "
        f"{describe_inputs(str(shape), **facts)}; models that take data={data}: {allowed}"
    )


def _declared_models(folder: Path) -> dict[str, ModelInputs]:
    """``{option: declaration}`` of the model yamls in ``folder`` that declare one."""
    declared = {}
    for path in sorted(folder.glob("*.yaml")):
        target = OmegaConf.load(path).get("_target_")
        try:
            inputs = model_inputs(hydra.utils.get_object(target)) if target else None
        except ImportError:  # a yaml whose model is not importable here names nothing
            inputs = None
        if inputs is not None:
            declared[path.stem] = inputs
    return declared
