"""Comparison baselines of the paper: MMSE noise-PSD-tracking enhancement and SVM rethresholding."""
from .mmse import gammatone_power_response, mmse_enhance, mmse_mask
from .rethreshold import noise_frames, rethreshold

__all__ = ["mmse_enhance", "mmse_mask", "gammatone_power_response", "rethreshold", "noise_frames"]
