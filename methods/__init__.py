"""Anomaly-detection methods beside GLASS on the same pipeline (datasets, backbones, engine, video).

A method is a torch model (`base.AnomalyModel`: images -> patch-score grids in [0, 1] and the grid
its image score is read from) plus its fitting logic, described by a frozen config that travels in
the checkpoint. `registry` maps method names to them; GLASS (`model.GlassModel`) is one of them.
"""
