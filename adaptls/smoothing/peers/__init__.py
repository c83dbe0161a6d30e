"""The calibration losses that label smoothing is compared with: focal, FLSD (adaptive
focal), dual focal, MbLS (margin), CALS, AdaFocal, ACLS, MDCA and MaxSup. Each registers itself
under its ``smoothing=<name>`` when imported."""

from adaptls.smoothing.peers.acls import ACLSmoothing
from adaptls.smoothing.peers.adafocal import AdaFocalLoss
from adaptls.smoothing.peers.adaptive_focal import AdaptiveFocalLoss
from adaptls.smoothing.peers.cals import ClassAdaptiveMarginSmoothing
from adaptls.smoothing.peers.dual_focal import DualFocalLoss
from adaptls.smoothing.peers.focal import FocalLoss
from adaptls.smoothing.peers.margin import MarginSmoothing
from adaptls.smoothing.peers.maxsup import MaxSup
from adaptls.smoothing.peers.mdca import MDCA

__all__ = [
    "MDCA",
    "ACLSmoothing",
    "AdaFocalLoss",
    "AdaptiveFocalLoss",
    "ClassAdaptiveMarginSmoothing",
    "DualFocalLoss",
    "FocalLoss",
    "MarginSmoothing",
    "MaxSup",
]
