"""Dora grid searches: ``dora -P audiocraft grid <family>.<name>`` runs ``audiocraft/grids/<family>/<name>.py``.

A grid file defines ``explorer``, an explore function decorated with an explorer class of
:mod:`audiocraft.grids._base_explorers` (which chooses the metrics shown in the table)::

    @CompressionExplorer
    def explorer(launcher):
        launcher.bind_(solver='compression/encodec_musicgen_32khz')
        for lr in [1e-4, 3e-4]:
            launcher({'optim.lr': lr})

Each ``launcher(...)`` call schedules one experiment (on Slurm) with these overrides on top of
the bound ones; ``dora grid`` then shows their state and latest metrics.
"""
