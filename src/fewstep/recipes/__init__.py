"""How each shipped zoo model was trained: the recipes (data) and the segmented, staged training that records an
FD-vs-training-time curve while it trains, so the curve and the shipped weights come from one run."""
