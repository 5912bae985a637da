"""The paper's experiment (Section 5) end to end: train, test on unseen noises, report.

``run_experiment(config)`` follows the protocol of the shared corpus (its README):

1. *mixing* -- mixture sets (manifests only) for training (``kernel`` + ``svm`` splits x training
   noises), tuning (``tune`` split x training noises, only with ``tune=True``) and testing
   (``test`` split: real utterances = primary, synthetic-voice utterances = control, x the
   unseen test noises);
2. for each pitch setting ("true": pitch tracked on the premixed speech, "estimated": on the
   mixture) the training set is analysed once (:func:`fastifkl.training.prepare`) and a G-SVM and a
   KL-SVM are fitted on that analysis (:meth:`Separator.fit_data`) and saved in the work dir;
3. *testing* -- one job per test mixture: filterbank once, IBM, the features of each pitch
   setting, decision values of that setting's two models, the MMSE baseline mask, the
   rethresholding baseline on the G-SVM decision values, confusion counts of every system vs
   the IBM, and (beyond the paper) resynthesised speech of every system and the IBM scored by
   SNR gain and STOI;
4. *report* -- pooled scores per noise, the mean over the noises, Table 1 beside the paper's,
   Fig. 1 and Fig. 2 (PNG), ``results.json`` and ``RESULTS.md``.

Everything is configurable in a TOML file (:func:`load_config`); ``quick=True`` scales the
protocol down so that it runs in a few minutes (CI).

Modules: :mod:`.config` (the protocol and the corpus selection), :mod:`.run` (stages 1-3 and the
run), :mod:`.report` (aggregation, tables, figures, ``RESULTS.md``).
"""
from __future__ import annotations

from .config import QUICK, Config, load_config, select_corpus
from .report import (
    FIG2_SYSTEMS,
    PAPER_TABLE1,
    PITCH_NAMES,
    SVM_SYSTEMS,
    fig2_png,
    kl_minus_g,
    per_noise_markdown,
    results_markdown,
    resynthesis_markdown,
    stages_markdown,
    summarise,
    system_key,
    table1_markdown,
    write_results,
)
from .run import run_experiment

__all__ = ["Config", "QUICK", "load_config", "select_corpus", "run_experiment", "PAPER_TABLE1", "PITCH_NAMES",
           "SVM_SYSTEMS", "FIG2_SYSTEMS", "summarise", "system_key", "kl_minus_g", "table1_markdown",
           "per_noise_markdown", "resynthesis_markdown", "stages_markdown", "results_markdown", "fig2_png",
           "write_results"]
