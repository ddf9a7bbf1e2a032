"""pipelines: the ``plip`` command line and the jobs that chain spac, synth_pedes and plip_train."""
