"""adaptls strategies inside the Hugging Face ``Trainer`` (``pip install adaptls[hf]``).

>>> from transformers import Trainer
>>> from adaptls.integrations.hf import SmoothingCallback, smoothing_loss
>>> loss = smoothing_loss("uniform", epsilon=0.1)  # causal LM: labels shifted here
>>> trainer = Trainer(model, args, train_dataset=train, eval_dataset=val,
...                   compute_loss_func=loss, callbacks=[SmoothingCallback(loss)])  # doctest: +SKIP

- :func:`smoothing_loss` (:class:`SmoothingLoss`): the ``compute_loss_func``: any strategy's
  loss of the model's logits, labels shifted for causal LMs, ``-100`` ignored, the sum
  divided by the Trainer's ``num_items_in_batch`` (right under gradient accumulation);
  ``head=model.get_output_embeddings()`` computes it from the output layer's inputs
  through the fused linear path (never the N x V logits).
- :class:`SmoothingCallback`: the strategy's lifecycle (epochs, end-of-epoch state
  reduction, the validation passes of the Trainer's evaluation during ``train``, the
  strategy's state in every checkpoint).
"""

try:
    import transformers  # noqa: F401
except ImportError as err:  # the optional extra is not installed
    raise ImportError(
        "adaptls.integrations.hf needs transformers and accelerate: pip install adaptls[hf]"
    ) from err

from adaptls.integrations.hf.callback import STRATEGY_STATE_FILE, SmoothingCallback
from adaptls.integrations.hf.loss import SmoothingLoss, smoothing_loss

__all__ = ["STRATEGY_STATE_FILE", "SmoothingCallback", "SmoothingLoss", "smoothing_loss"]
