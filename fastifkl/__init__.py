"""fastifkl: monaural speech separation with domain-invariant learned kernels.

Data flow: audio -> gammatone cochleagram -> per-unit features -> (learned) kernel
-> per-channel SVM -> binary mask -> resynthesis.
"""
__version__ = "0.1.0"

SAMPLE_RATE = 16000
FRAME_LEN = 320  # 20 ms at 16 kHz
HOP = 160  # 10 ms at 16 kHz
N_CHANNELS = 64
FMIN = 80.0
FMAX = 5000.0
