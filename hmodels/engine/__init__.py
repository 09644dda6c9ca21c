"""hmodels' compiled log densities, sampled by nutpie's NUTS (see :mod:`hmodels.engine.kernels`)."""
