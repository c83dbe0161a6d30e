"""BLEU and chrF of the tested weights: the test split translated at the end of testing."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from adaptls.checks import atomic_write, check_int, check_nonnegative
from adaptls.translation import bleu_tokenizer, corpus_scores, translate

log = logging.getLogger(__name__)


class TranslationMetrics(pl.Callback):
    """Translate the test split with the tested weights; log ``test/bleu`` and ``test/chrf``.

    Acts on data that can be translated, i.e. whose datamodule has a
    ``translation_task(split)`` method (:class:`~adaptls.data.TextMTDataModule`); on any
    other data it does nothing. At the end of every ``trainer.test`` the test sources are
    decoded by beam search (:func:`adaptls.translation.translate`), detokenised and scored
    with sacrebleu (:func:`adaptls.translation.corpus_scores`). Every process decodes the
    whole split (scores need the whole corpus), so the logged values agree across ranks.

    Written to ``dirpath``: ``test.hyp`` (every hypothesis, one per line, in the order of
    the references) and ``samples.json`` (the first ``samples`` source / reference /
    hypothesis triples); the samples also go to W&B as a table when a W&B logger is
    attached. :meth:`record` (sacrebleu's signatures, the decoding settings, the samples)
    is the ``translation`` section of ``metrics.json``.

    Args:
        beam_size: hypotheses kept per sentence; 1 is greedy search.
        length_penalty: alpha of the length-normalised score log p / |y|^alpha.
        max_len_a, max_len_b: at most ``a * S + b`` output tokens for a source of S.
        batch_size: sentences decoded together.
        samples: sample translations kept for the run's record.
        dirpath: where the files go (None: nothing is written).
    """

    def __init__(
        self,
        beam_size: int = 4,
        length_penalty: float = 1.0,
        max_len_a: float = 1.2,
        max_len_b: int = 10,
        batch_size: int = 128,
        samples: int = 8,
        dirpath: str | None = None,
    ) -> None:
        self.beam_size = check_int("beam_size", beam_size, minimum=1)
        self.length_penalty = check_nonnegative("length_penalty", length_penalty)
        self.max_len_a = check_nonnegative("max_len_a", max_len_a)
        self.max_len_b = check_int("max_len_b", max_len_b, minimum=0)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.samples = check_int("samples", samples, minimum=0)
        self.dirpath = None if dirpath is None else Path(dirpath)
        self._record: dict[str, Any] = {}

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        task_of = getattr(trainer.datamodule, "translation_task", None)
        if not callable(task_of):
            return
        task = task_of("test")
        settings = {
            "beam_size": self.beam_size,
            "length_penalty": self.length_penalty,
            "max_len_a": self.max_len_a,
            "max_len_b": self.max_len_b,
        }
        hypotheses = translate(
            pl_module.net, task, batch_size=self.batch_size, device=pl_module.device, **settings
        )
        language = getattr(trainer.datamodule, "target_language", None)
        scores = corpus_scores(hypotheses, task.references, tokenize=bleu_tokenizer(language))
        # every rank scored the same corpus: the max of identical values is that value
        pl_module.log_dict(
            {"test/bleu": scores["bleu"], "test/chrf": scores["chrf"]},
            sync_dist=True,
            reduce_fx="max",
        )
        samples = [
            {"source": s, "reference": r, "hypothesis": h}
            for s, r, h in zip(task.source_texts, task.references, hypotheses, strict=True)
        ][: self.samples]
        self._record = {
            "bleu_signature": scores["bleu_signature"],
            "chrf_signature": scores["chrf_signature"],
            "sentences": len(hypotheses),
            **settings,
            "samples": samples,
        }
        log.info(
            "test BLEU %.2f (%s), chrF %.2f (%s)",
            scores["bleu"],
            scores["bleu_signature"],
            scores["chrf"],
            scores["chrf_signature"],
        )
        if trainer.is_global_zero:
            self._write(hypotheses, samples)
            self._log_samples(trainer, samples)

    def record(self) -> dict[str, Any]:
        """The ``translation`` section of ``metrics.json`` (empty until a test has run)."""
        return dict(self._record)

    def _write(self, hypotheses: list[str], samples: list[dict[str, str]]) -> None:
        if self.dirpath is None:
            return
        self.dirpath.mkdir(parents=True, exist_ok=True)
        lines = "".join(h.replace("\n", " ") + "\n" for h in hypotheses)
        with atomic_write(self.dirpath / "test.hyp", "wb") as f:
            f.write(lines.encode("utf-8"))
        with atomic_write(self.dirpath / "samples.json", "wb") as f:
            f.write(json.dumps(samples, indent=2, ensure_ascii=False).encode("utf-8"))

    @staticmethod
    def _log_samples(trainer: pl.Trainer, samples: list[dict[str, str]]) -> None:
        columns = ["source", "reference", "hypothesis"]
        for logger in trainer.loggers:
            log_text = getattr(logger, "log_text", None)  # W&B's table of text
            if callable(log_text) and samples:
                log_text(
                    key="test/translations",
                    columns=columns,
                    data=[[s[c] for c in columns] for s in samples],
                )
