"""Integration on the shared corpus (real IEEE speech, real noises); skipped when absent."""
import numpy as np
import pytest

from fastifkl import audio, masks
from fastifkl import gammatone as gt


@pytest.mark.corpus
@pytest.mark.parametrize("noise", ["white", "babble", "cafe"])
def test_ibm_resynthesis_raises_snr(corpus_dir, noise):
    s = audio.load(corpus_dir / "speech" / "ieee_real" / "S_02_01.flac")
    v = audio.load(corpus_dir / "noise" / f"{noise}.flac")
    mx = audio.mix_at_snr(s, v, -5.0, np.random.default_rng(0))
    cfs = gt.erb_space()
    ibm = masks.ibm(gt.cochleagram(gt.filterbank(mx.speech, cfs=cfs)), gt.cochleagram(gt.filterbank(mx.noise, cfs=cfs)))
    ones = np.ones(ibm.shape)
    ref = gt.resynthesize(mx.speech, ones, cfs=cfs)
    before = audio.snr_db(ref, gt.resynthesize(mx.mixture, ones, cfs=cfs))
    after = audio.snr_db(ref, gt.resynthesize(mx.mixture, ibm, cfs=cfs))
    print(f"{noise}: SNR {before:.2f} -> {after:.2f} dB (gain {after - before:.2f})")
    assert after - before >= 5.0
