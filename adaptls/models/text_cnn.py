"""Kim (2014)'s convolutional sentence classifier over padded token ids."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adaptls.checks import check_choice, check_int, check_num_classes
from adaptls.models._checks import check_dropout
from adaptls.models.inputs import ModelInputs

POOLINGS = ("max", "mean")


class TextCNN(nn.Module):
    """Embedding -> parallel 1D convolutions -> pooling over time -> dropout -> linear.

    Kim, "Convolutional Neural Networks for Sentence Classification" (EMNLP 2014), the
    CNN-rand variant (embeddings learned from scratch): one convolution per kernel size k
    (3, 4, 5 with 100 maps each in the paper), ReLU, max over time, concatenated, dropout
    (0.5 in the paper), a linear layer to the K logits. Deviations: ``width`` (the
    embedding size) defaults to 128, not 300; the paper's max-norm constraint (3) on the
    output weights is left to the optimizer's weight decay; and the authors' code
    (yoonkim/CNN_sentence, ``get_idx_from_sent``) pads every sentence with zero vectors,
    max_k - 1 in front and behind it up to the corpus's longest sentence + 2 (max_k - 1),
    and pools over *all* windows, so windows of padding only add ReLU(bias) candidates that
    depend on that padding; here they are skipped. For one kernel size k and a sentence padded with exactly k - 1 zero vectors on
    each side the two are the same computation (a test checks this).

    Padding never changes the output. Tokens equal to ``pad_id`` are masked: their
    embeddings are zeroed, and each convolution is "wide" (padding k - 1 on both sides), so
    its outputs are exactly the windows of the unpadded text plus windows of zeros; pooling
    runs only over the windows that overlap at least one real token. Max pooling takes the
    maximum of the ReLU outputs over those windows, mean pooling their average. So a text
    gives the same logits alone or right-padded in any batch (up to float32 reordering in
    the convolution kernels). A text of padding only pools to zeros.

    Args:
        input_shape: ``(max_length,)``, the longest token sequence a batch may have.
        num_classes: K, the number of logits.
        vocab_size: the number of token ids (ids in [0, vocab_size)); from the data
            (``${data.vocab_size}`` in the config).
        width: embedding size.
        channels: feature maps per kernel size.
        kernel_sizes: convolution widths, one convolution each.
        dropout: drop probability on the pooled features, in [0, 1).
        pooling: ``max`` (the paper) or ``mean``.
        pad_id: the padding token id (0 for adaptls' tokenizer).
    """

    #: the learning rate where ``optimizer.lr`` is null (AdamW; text_lt_smoothing's)
    default_lr: ClassVar[float] = 0.002

    #: what it reads (checked against the data before a run): token ids, one label per text
    inputs: ClassVar[ModelInputs] = ModelInputs(ranks=(1,), layout="(max_length,)", token_ids=True)

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        vocab_size: int | None = None,
        width: int = 128,
        channels: int = 100,
        kernel_sizes: Sequence[int] = (3, 4, 5),
        dropout: float = 0.5,
        pooling: str = "max",
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        self.input_shape = self.inputs.check_shape(input_shape)
        num_classes = check_num_classes(num_classes)
        if vocab_size is None:
            raise ValueError(
                "vocab_size must be an int >= 2, got None: TextCNN reads token ids, so it "
                "needs a text datamodule (data=text_cls), whose vocab_size it takes"
            )
        vocab_size = check_int("vocab_size", vocab_size, minimum=2)
        width = check_int("width", width, minimum=1)
        channels = check_int("channels", channels, minimum=1)
        if isinstance(kernel_sizes, str | bytes) or not isinstance(kernel_sizes, Sequence):
            raise TypeError(f"kernel_sizes must be a list of positive ints, got {kernel_sizes!r}")
        if not kernel_sizes:
            raise ValueError("kernel_sizes must name at least one convolution width, got []")
        kernels = [
            check_int(f"kernel_sizes[{i}]", k, minimum=1) for i, k in enumerate(kernel_sizes)
        ]
        dropout = check_dropout(dropout)
        self.pad_id = check_int("pad_id", pad_id, minimum=0)
        if self.pad_id >= vocab_size:
            raise ValueError(f"pad_id must be < vocab_size={vocab_size}, got {pad_id!r}")
        self.pooling = check_choice("pooling", pooling, POOLINGS)
        self.kernel_sizes = tuple(kernels)

        self.embedding = nn.Embedding(vocab_size, width, padding_idx=self.pad_id)
        self.convs = nn.ModuleList(nn.Conv1d(width, channels, k, padding=k - 1) for k in kernels)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(channels * len(kernels), num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        """Token ids (B, T), T <= max_length, padded with ``pad_id`` -> logits (B, K)."""
        self._check(tokens)
        mask = (tokens != self.pad_id).unsqueeze(1)  # (B, 1, T)
        x = self.embedding(tokens).transpose(1, 2) * mask  # (B, width, T)
        pooled = []
        for k, conv in zip(self.kernel_sizes, self.convs, strict=True):
            features = F.relu(conv(x))  # (B, channels, T + k - 1)
            # Window j covers positions j-k+1 .. j: it overlaps a real token iff the
            # k-window max of the mask, zero-padded by k - 1 on each side, is 1.
            valid = F.max_pool1d(F.pad(mask.float(), (k - 1, k - 1)), k, stride=1) > 0
            features = features.masked_fill(~valid, 0.0)
            if self.pooling == "max":
                pooled.append(features.amax(-1))  # ReLU >= 0: zeros never exceed a real max
            else:
                pooled.append(features.sum(-1) / valid.sum(-1).clamp(min=1))
        return self.classifier(self.dropout(torch.cat(pooled, dim=1)))

    def _check(self, tokens: Tensor) -> None:
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"expected token ids of shape (B, T) with T <= {self.input_shape[0]}, int64, "
                f"got shape {tuple(tokens.shape)} and dtype {tokens.dtype}"
            )
        if tokens.shape[1] > self.input_shape[0]:
            raise ValueError(
                f"expected token ids of shape (B, T) with T <= {self.input_shape[0]} "
                f"(max_length), got {tuple(tokens.shape)}"
            )
