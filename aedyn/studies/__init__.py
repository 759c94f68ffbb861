"""Studies built on the sweeps (runnable modules: ``python -m aedyn.studies.<name>``)."""
